#!/usr/bin/env python3
"""Checks openapi.yaml for the test suite.

  openapi-check.py spec                      validate the document as OpenAPI 3.1
  openapi-check.py contract                  print the operations, their documented statuses and response headers
                                             (name: required), and the error codes, as JSON
  openapi-check.py instance SCHEMA FILE      validate the JSON in FILE against components/schemas/SCHEMA
  openapi-check.py load FILE                 load FILE as the spec is loaded (fails on a key given twice)
"""
import json
import pathlib
import sys

import yaml

SPEC_PATH = pathlib.Path(__file__).resolve().parent.parent / "openapi.yaml"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice (it keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(text=None):
    return yaml.load(text if text is not None else SPEC_PATH.read_text(), Loader=UniqueKeyLoader)


def main(argv):
    if argv[1] == "load":
        load(pathlib.Path(argv[2]).read_text())
        print("loaded")
        return
    spec = load()
    if argv[1] == "spec":
        from openapi_spec_validator import validate
        validate(spec)
        print("valid OpenAPI", spec["openapi"])
    elif argv[1] == "contract":
        def resolve(node):
            while isinstance(node, dict) and "$ref" in node:
                *_, section, name = node["$ref"].split("/")
                node = spec["components"][section][name]
            return node

        operations = []
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                responses = {}
                for status, response in operation["responses"].items():
                    headers = resolve(response).get("headers", {})
                    responses[status] = {name: bool(resolve(h).get("required", False)) for name, h in headers.items()}
                operations.append({"method": method.upper(), "path": path, "responses": responses})
        code = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
        print(json.dumps({"operations": operations, "errorCodes": code["enum"],
                          "everyResponse": spec["x-every-response-headers"]}))
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
