#!/usr/bin/env python3
"""Checks openapi.yaml for the test suite.

  openapi-check.py spec                      validate the document as OpenAPI 3.1
  openapi-check.py operations                print [[method, path, [status codes]], ...] as JSON
  openapi-check.py instance SCHEMA FILE      validate the JSON in FILE against components/schemas/SCHEMA
"""
import json
import pathlib
import sys

import yaml

SPEC_PATH = pathlib.Path(__file__).resolve().parent.parent / "openapi.yaml"


def load():
    return yaml.safe_load(SPEC_PATH.read_text())


def main(argv):
    spec = load()
    if argv[1] == "spec":
        from openapi_spec_validator import validate
        validate(spec)
        print("valid OpenAPI", spec["openapi"])
    elif argv[1] == "operations":
        operations = []
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                operations.append([method.upper(), path, sorted(operation["responses"].keys())])
        print(json.dumps(operations))
    elif argv[1] == "instance":
        from openapi_schema_validator import OAS31Validator
        schema = {"$ref": f"#/components/schemas/{argv[2]}", "components": spec["components"]}
        instance = json.loads(pathlib.Path(argv[3]).read_text())
        errors = sorted(OAS31Validator(schema).iter_errors(instance), key=str)
        for error in errors:
            print(f"{list(error.absolute_path)}: {error.message}", file=sys.stderr)
        sys.exit(1 if errors else 0)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
