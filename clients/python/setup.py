"""Builds carpet-client with its gRPC stubs generated from the repository's .proto files.

The protos import each other as `protos/carpet/...`; they are copied under
`carpet_client/_pb/` with those imports rewritten, so the generated modules live in this
package's namespace (`carpet_client._pb.carpet.render.v1.render_pb2`) and never clash with a
top-level `protos` package. The wire format (proto packages `carpet.*.v1`) is unchanged.
"""
from __future__ import annotations

import os
import re
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = os.path.join(HERE, "..", "..", "protos")
PACKAGE_ROOT = "carpet_client/_pb"
WANTED = ("carpet/render/v1/render.proto", "carpet/credit/v1/account.proto",
          "carpet/credit/v1/credit.proto", "carpet/credit/v1/audit.proto",
          "carpet/credit/v1/auth.proto")


def generate(out_dir: str) -> None:
    import grpc_tools
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as sources:
        for relative in WANTED:
            with open(os.path.join(PROTOS, relative), encoding="utf-8") as handle:
                text = handle.read()
            text = re.sub(r'import "protos/', f'import "{PACKAGE_ROOT}/', text)
            target = os.path.join(sources, PACKAGE_ROOT, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        result = protoc.main(["grpc_tools.protoc", f"-I{sources}", f"-I{well_known}",
                              f"--python_out={out_dir}", f"--pyi_out={out_dir}",
                              f"--grpc_python_out={out_dir}",
                              *(os.path.join(sources, PACKAGE_ROOT, path) for path in WANTED)])
        if result != 0:
            raise RuntimeError("protoc failed")
    for directory, _, files in os.walk(os.path.join(out_dir, PACKAGE_ROOT)):
        if "__init__.py" not in files:
            open(os.path.join(directory, "__init__.py"), "w").close()


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        generate(self.build_lib)


setup(cmdclass={"build_py": BuildWithStubs})
