// The package loads the repository's .proto files at run time (proto-loader) and its types are
// generated from them at build time: both come from ../../protos, copied here (git-ignored).
import { cpSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
rmSync(join(root, "protos"), { recursive: true, force: true });
cpSync(join(root, "..", "..", "protos"), join(root, "protos"), {
  recursive: true,
  filter: (source) => !/(_pb2|_pb2_grpc)\.pyi?$|__pycache__|\.generated$|__init__\.py$/.test(source),
});
