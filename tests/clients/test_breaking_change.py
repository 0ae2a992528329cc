"""`make lint` runs `buf breaking` against the previous commit's protos, which the client
packages are built from: a breaking change to a field they use fails it. Shown on a clone of
this repository whose working tree changes SubmitRenderRequest.mode from string to int32."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RENDER_PROTO = os.path.join("protos", "carpet", "render", "v1", "render.proto")


def make_lint(clone):
    # The project's own .venv (already installed); the clone gets its stubs generated.
    return subprocess.run(["make", "lint", f"VENV={ROOT}/.venv", "BUF_AGAINST=.git#ref=HEAD"],
                          cwd=clone, capture_output=True, text=True, timeout=600)


def test_a_breaking_change_to_a_client_field_fails_make_lint(tmp_path):
    clone = tmp_path / "repository"
    subprocess.run(["git", "clone", "-q", ROOT, str(clone)], check=True, timeout=120)
    assert make_lint(clone).returncode == 0  # unchanged: clean

    path = clone / RENDER_PROTO
    text = path.read_text()
    start = text.index("message SubmitRenderRequest {")
    assert "  string mode = 4;" in text[start:]
    path.write_text(text[:start]
                    + text[start:].replace("  string mode = 4;", "  int32 mode = 4;", 1))
    broken = make_lint(clone)
    assert broken.returncode != 0
    assert 'Field "4" with name "mode" on message "SubmitRenderRequest" changed type' in \
        broken.stdout + broken.stderr
