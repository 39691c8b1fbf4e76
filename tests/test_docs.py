"""The README and docs/ show only code that works.  Every fenced block names its language:

- ``python`` blocks run, all pages in one session and one empty folder, README first, then
  docs/ in PAGES' order (the README's block trains the smoke-sized run the others use);
- ``bash`` blocks: each ``cifar-edge`` line is parsed by the CLI's own parser (a subcommand or flag
  that does not exist fails) and the cheap ones (CHEAP) run; each ``python benchmarks/...`` or
  ``examples/...`` script must exist and define every flag given; other programs (pip, npm, adb,
  grep ...) must be on a short list;
- ``text`` blocks are output, never code.
Inline `cifar-edge ...` commands in the prose and tables are parsed the same way, in the results
record too.  The README's format and model tables equal `cifar-edge formats/models --markdown`."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from cifar_edge.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The order the python blocks run in: the library page follows the README's example.
PAGES = [README, DOCS / "library.md", *sorted(p for p in DOCS.glob("*.md") if p.name != "library.md")]
RECORD = ROOT / "benchmarks" / "results" / "README.md"
LANGUAGES = {"python", "bash", "text"}
# Programs a bash block may name besides ours: installing and testing, not our interface.
OTHER_PROGRAMS = {"pip", "apt-get", "pip3", "npm", "npx", "adb", "./gradlew", "cd", "export", "git", "kotlinc", "unzip",
                  "grep", "head", "sort", "cut", "jq"}
BLOCK = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`((?:\.venv/bin/)?(?:cifar-edge [^`]+|python3? (?:benchmarks|examples)/[^`]*))`")


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line) of each fenced block."""
    text = path.read_text()
    return [(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1) for m in BLOCK.finditer(text)]


def commands(code: str) -> list[list[str]]:
    """The commands of a shell text: continuations joined, comments dropped, split at && ; | ||."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        current = []
        for token in shlex.split(line, comments=True):
            if token in ("&&", "||", ";", "|"):
                out.append(current)
                current = []
            else:
                current.append(token.rstrip(";"))
        out.append(current)
    return [c for c in out if c]


_CLI = typer.main.get_command(app)


def _parse_cli(args: list[str]) -> str | None:
    """None when the CLI's parser takes ``args`` (nothing runs), else why not."""
    try:
        ctx = _CLI.make_context("cifar-edge", list(args))
        group, rest = _CLI, [*getattr(ctx, "_protected_args", []), *ctx.args]
        while True:
            name, cmd, rest = group.resolve_command(ctx, rest)
            ctx = cmd.make_context(name, rest, parent=ctx)
            if not hasattr(cmd, "commands"):
                return None
            group, rest = cmd, [*getattr(ctx, "_protected_args", []), *ctx.args]
    except Exception as e:  # noqa: BLE001 - whatever the parser says is the problem
        return f"{type(e).__name__}: {getattr(e, 'format_message', lambda: str(e))()}"


def _script_problem(script: str, args: list[str]) -> str | None:
    path = ROOT / script
    if not path.is_file():
        return f"no such script {script}"
    source = path.read_text()
    missing = [a.split("=")[0] for a in args if a.startswith("--") and f'"{a.split("=")[0]}"' not in source]
    return f"{script} defines no {', '.join(missing)}" if missing else None


def command_problem(argv: list[str]) -> str | None:
    """Why a documented command would not run as written, or None."""
    argv = [a for a in argv if not re.fullmatch(r"[A-Z_]+=\S*", a)]        # FOO=1 cifar-edge ...
    program = argv[0].removeprefix(".venv/bin/")
    if program == "cifar-edge":
        return _parse_cli(argv[1:])
    if program in ("python", "python3"):
        if argv[1:3] == ["-m", "cifar_edge"] or argv[1:3] == ["-m", "cifar_edge.cli"]:
            return _parse_cli(argv[3:])
        if argv[1] == "-m":
            return None if argv[2] in ("pytest", "venv", "pip") else f"python -m {argv[2]} is not on the list"
        return _script_problem(argv[1], argv[2:])
    if program in OTHER_PROGRAMS or program.endswith("/pip"):
        return None
    return f"{program} is neither ours nor on the list of other programs"


def test_every_block_names_a_language_we_check():
    for page in [*PAGES, RECORD]:
        for lang, _, line in blocks(page):
            assert lang in LANGUAGES, f"{page.name}:{line}: a ``` block marked {lang!r}; use one of {sorted(LANGUAGES)}"


def _mention(problem: str) -> bool:
    """Prose may name a command or flag without its arguments (`cifar-edge import`, `export
    --variant`): only what is missing is forgiven there, never a name that does not exist."""
    return problem.startswith("MissingParameter") or "requires an argument" in problem


def test_every_documented_command_parses():
    checked, problems = 0, []
    for page in [*PAGES, RECORD]:
        text = page.read_text()
        found = [(line, c, False) for lang, code, line in blocks(page) if lang == "bash" for c in commands(code)]
        for m in INLINE.finditer(text):
            span = m.group(1)
            if any(p in span for p in ("...", "[", "|", "<", "COMMAND")):
                continue                                         # a pattern (`train ... --resume`), not a command
            found.append((text.count("\n", 0, m.start()) + 1, shlex.split(span), True))
        for line, argv, inline in found:
            checked += 1
            problem = command_problem(argv)
            if problem and not (inline and _mention(problem)):
                problems.append(f"{page.relative_to(ROOT)}:{line}: {' '.join(argv)}\n    {problem}")
    assert not problems, "\n".join(problems)
    assert checked > 80


# Documented shell commands cheap enough to run for real here (no run folder, no TensorFlow).
CHEAP = {("cifar-edge", "formats"), ("cifar-edge", "formats", "--json"), ("cifar-edge", "formats", "--markdown")}


def test_the_cheap_shell_commands_run():
    ran = 0
    for page in PAGES:
        for lang, code, line in blocks(page):
            for argv in commands(code) if lang == "bash" else ():
                if tuple(argv) in CHEAP:
                    result = CliRunner().invoke(app, argv[1:])
                    assert result.exit_code == 0 and result.stdout.strip(), f"{page.name}:{line}: {result.output}"
                    ran += 1
    assert ran >= 1


def test_a_wrong_name_is_caught():
    """The checks above can fail: a misspelt flag, subcommand or script flag is reported."""
    assert command_problem(["cifar-edge", "export", "runs/x", "--format", "tflite", "--int8"]) is None
    assert "No such option" in command_problem(["cifar-edge", "export", "runs/x", "--int9"])
    assert command_problem(["cifar-edge", "exprot", "runs/x"])
    assert command_problem(["cifar-edge", "weights", "import-tflite", "f.tflite", "--out", "w.h5"]) is None
    assert command_problem(["cifar-edge", "weights", "import-tflit", "f.tflite"])
    assert command_problem(["cifar-edge", "import", "m.h5", "--data", "cifar10"])      # --out is required
    assert command_problem(["python", "benchmarks/bench_cifar10.py", "--run", "r"]) is None
    assert command_problem(["python", "benchmarks/bench_cifar10.py", "--runn", "r"])
    assert command_problem(["rm", "-rf", "runs"])
    assert _mention(command_problem(["cifar-edge", "import"]))
    assert not _mention(command_problem(["cifar-edge", "imprt"]))


def test_readme_starts_with_the_two_commands_ci_runs():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; keep it to 200 (move detail to docs/)"
    assert lines[2] == "```bash" and lines[5] == "```", lines[:7]
    assert lines[3].endswith(".venv/bin/cifar-edge quickstart")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert lines[4] == ci[-1] == ".venv/bin/python -m pytest -q"


@pytest.mark.parametrize("command", [("formats", "--markdown"), ("models", "--markdown")])
def test_readme_tables_equal_the_registries(command):
    marker = f"<!-- cifar-edge {' '.join(command)} -->"
    text = README.read_text()
    assert marker in text, f"README.md lacks the table under {marker}"
    in_readme = text.split(marker, 1)[1].split("<!-- end -->", 1)[0].strip()
    result = CliRunner().invoke(app, list(command))
    assert result.exit_code == 0, result.output
    assert in_readme == result.stdout.strip(), f"README.md's table differs: regenerate it with `cifar-edge {' '.join(command)}`"


def _anchors(page: Path) -> set:
    """The #anchors GitHub gives the page's headings."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", BLOCK.sub("", page.read_text()), re.MULTILINE)}


def test_links_between_pages_resolve():
    for page in [*PAGES, RECORD]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path = page.parent / target if target else page
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which is not there"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{page.relative_to(ROOT)} links to {target}#{anchor}: no such heading"


def test_importing_the_package_loads_no_tensorflow_and_every_entry_point_says_why():
    import cifar_edge
    code = "import cifar_edge, sys; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False"
    library = (DOCS / "library.md").read_text()
    for name in cifar_edge.__all__:
        fn = getattr(cifar_edge, name)
        assert callable(fn) and (fn.__doc__ or "").strip(), name
        assert f"{name}(" in library, f"docs/library.md does not show {name}"


def test_a_library_mistake_is_one_line_naming_the_fix(tmp_path):
    import cifar_edge
    from cifar_edge.errors import CifarEdgeError
    with pytest.raises(CifarEdgeError, match="tflite-int8"):
        cifar_edge.export_files(tmp_path / "no-run", ["tflite-int9"])          # refused before any work
    with pytest.raises(CifarEdgeError, match="--max-drop"):
        cifar_edge.export_files(tmp_path / "no-run", ["tflite-int8"], max_drop=-1)
    with pytest.raises(TypeError, match="epoch"):
        cifar_edge.train_run(tmp_path / "run", epoch=1)                       # a setting TrainConfig lacks


def test_the_headline_picture_is_drawn_from_the_results(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import plot_headline
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    panels = plot_headline.plot(tmp_path / "headline.png")
    cnn, mobilenet = panels.values()
    assert {p["file"] for p in cnn} >= {"tflite-float32", "tflite-int8", "onnx-int8", "openvino-int8"}
    assert {p["file"] for p in mobilenet} >= {"float32", "int8 PTQ"}
    assert (tmp_path / "headline.png").stat().st_size > 20_000
    assert "benchmarks/results/headline.png" in README.read_text()


def test_python_blocks_run(tmp_path, monkeypatch):
    """Every python block, in order, as a user would paste them; photo.png is any picture."""
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    Image.fromarray((np.indices((48, 64)).sum(0)[..., None] * [3, 1, 2] % 256).astype(np.uint8)).save("photo.png")
    namespace = {"__name__": "__main__"}
    ran = 0
    for page in PAGES:
        for lang, code, line in blocks(page):
            if lang == "python":
                exec(compile("\n" * (line) + code, str(page.relative_to(ROOT)), "exec"), namespace)   # noqa: S102
                ran += 1
    assert ran >= 3
