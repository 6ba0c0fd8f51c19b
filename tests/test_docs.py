"""Every command in README.md and docs/*.md works, as far as it can be checked without training.

A fenced block tagged ``bash``, ``sh``, ``shell`` or ``console``, or not tagged at all, is a list of shell commands
(tag program output and other text ``text``). Commands are split at ``&&``, ``||``, ``;`` and ``|``, leading
``NAME=value`` environment settings are dropped, and each command is checked by what it runs:

- ``python -m medzero_pl.fit key=value ...``: the overrides compose into a valid config (``config.compose``);
  ``--help`` prints the field list.
- ``python -m medzero_pl.plan key=value ... [--gpu NAME|GIB]``: the overrides compose and ``--gpu`` parses.
- ``python -m medzero_pl fit|validate ...`` (the LightningCLI): its arguments parse, config file included.
- ``python -m medzero_pl.eval ...``, ``python -m medzero_pl.export ...``, ``python -m medzero_pl.serve ...`` and
  ``python -m medzero_pl.difficulty ...``: the arguments parse (the difficulty command's overrides compose); the
  benchmarks given to eval exist. ``python -m medzero_pl.server_layout ...``: its two commands are planned as
  ``--dry-run`` does on a 4-GPU node.
- ``python scripts/<name>.py ...``: the script exists; with argparse, ``--help`` exits 0 and the arguments parse;
  without, ``--help`` prints its docstring.
- ``scripts/<name>.sh`` and ``.sbatch`` (also under ``sbatch``): the script exists and ``bash -n`` passes; one that
  hands its arguments to ``medzero_pl.fit`` gets them checked as above.
- ``make <target> [VAR=value]``: ``make -n`` knows the target, and every ``medzero_pl.fit`` line it would run is
  checked as above (``make demo ARGS=...``).
- ``python -m pytest ... <paths>``: the test paths exist. ``python -c CODE``: the code compiles.
- The commands in ``SYSTEM_COMMANDS`` and ``UNCHECKED_MODULES`` are not checked; anything else fails.

Conventions (docs/development.md, "Commands in the docs are tested"): text after ``#`` is a comment; in a console
block ``$ `` starts a command, and output that begins with ``error:`` is the one line the command must fail with
(``...`` matches anything); ``[--flag value]`` is an optional argument, checked as given; ``<name>`` is a
placeholder from ``PLACEHOLDERS``; paths under ``runs/`` are what earlier commands write, and a LightningCLI
``--config runs/.../cli_config.yaml`` is stood in for by the default run's; ``<!-- docs-test: skip REASON -->`` on
the line before a fence skips that block.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
from collections.abc import Callable
from contextlib import chdir, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import pytest
import yaml

from medzero_pl.config import compose
from medzero_pl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_TAGS = {"", "bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3", ".venv/bin/python"}
SYSTEM_COMMANDS = {
    "pip": "installs packages from the network",
    ".venv/bin/pip": "installs packages from the network",
    "grep": "reads the output files of a run",
    "head": "shortens another command's output",
}
UNCHECKED_MODULES = {"venv": "creates a virtual environment", "pip": "installs packages from the network"}
PLACEHOLDERS = {"run_dir": "runs/default", "checkpoint": "runs/default/checkpoints/last.ckpt"}
SEED_GPUS = ["--gpus", "0,1,2,3"]  # `server_layout` commands are checked as on the seed's 4-GPU node
SEPARATORS = {"&&", "||", ";", "|"}
FENCE = re.compile(r"^\s*(```+)\s*([\w+-]*)\s*$")
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(.+?)\s*-->")
PLACEHOLDER = re.compile(r"<([A-Za-z][\w-]*)>")
OPTIONAL = re.compile(r"\[(-[^\]]*)\]")  # `[--layers 4]`: an optional argument
ENV = re.compile(r"^[A-Za-z_]\w*=")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


class Refused(Exception):
    """The documented command is refused by the program it runs; the message is what its user would read."""


class _Parsed(Exception):
    def __init__(self, namespace: object) -> None:
        super().__init__()
        self.namespace = namespace


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    """Line of the opening fence (1-based)."""
    tag: str
    lines: tuple[str, ...]
    skip: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    expected_error: str | None = None


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the skip reason of a `docs-test: skip` marker before it."""
    lines, blocks, i = path.read_text().splitlines(), [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == opening.group(1)), len(lines))
        marker = SKIP.search(lines[i - 1]) if i else None
        blocks.append(Block(path, i + 1, opening.group(2), tuple(lines[i + 1 : end]), marker and marker.group(1)))
        i = end + 1
    return blocks


def commands(block: Block) -> list[Command]:
    """The block's commands, continuation lines joined; in a console block, with the error each must print."""
    result: list[Command] = []
    pending: list[str] = []
    for number, line in enumerate(block.lines, start=block.line + 1):
        if block.tag == "console":
            if line.startswith("$ "):
                result.append(Command(number, line[2:]))
            elif result and line.startswith("error:") and result[-1].expected_error is None:
                result[-1] = Command(result[-1].line, result[-1].text, line)
            continue
        pending.append(line.rstrip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            text = " ".join(pending).strip()
            if text and not text.startswith("#"):
                result.append(Command(number - len(pending) + 1, text))
            pending = []
    return result


def simple_commands(text: str) -> list[list[str]]:
    """`a && b | c` as [[a], [b], [c]], after placeholders and optional brackets are resolved."""

    def placeholder(match: re.Match) -> str:
        if match.group(1) not in PLACEHOLDERS:
            raise AssertionError(f"unknown placeholder {match.group(0)}: add it to PLACEHOLDERS in tests/test_docs.py")
        return PLACEHOLDERS[match.group(1)]

    lexer = shlex.shlex(OPTIONAL.sub(r"\1", PLACEHOLDER.sub(placeholder, text)), posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    parts: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            parts.append([])
        elif token and set(token) <= set(lexer.punctuation_chars):
            raise AssertionError(f"shell syntax {token!r} is not understood by tests/test_docs.py")
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


# ------------------------------------------------------------------------------------------------ the checks
def check(argv: list[str], workdir: Path) -> None:
    """Raise `Refused` if the program refuses `argv`, AssertionError if the doc names something that is not there."""
    while argv and ENV.match(argv[0]):
        argv = argv[1:]
    program, args = argv[0], argv[1:]
    if program in SYSTEM_COMMANDS:
        return
    if program in PYTHONS:
        return check_python(args, workdir)
    if program == "make":
        return check_make(args, workdir)
    if program == "sbatch":
        script = next(i for i, a in enumerate(args) if not a.startswith("-"))
        return check_script(args[script], args[script + 1 :], workdir, direct=False)
    if program.startswith("scripts/"):
        return check_script(program, args, workdir, direct=True)
    raise AssertionError(
        f"unknown command {program!r}: check it in tests/test_docs.py, add it to SYSTEM_COMMANDS with a reason, "
        "or put <!-- docs-test: skip REASON --> before the block"
    )


def check_python(args: list[str], workdir: Path) -> None:
    if args[0] == "-c":
        compile(args[1], "python -c", "exec")
    elif args[0].startswith("scripts/"):
        check_script(args[0], args[1:], workdir, direct=False)
    elif args[0] == "-m" and args[1] in UNCHECKED_MODULES:
        return
    elif args[0] == "-m" and args[1] in MODULE_CHECKS:
        MODULE_CHECKS[args[1]](args[2:], workdir)
    else:
        raise AssertionError(f"python {' '.join(args[:2])}: no check for it in tests/test_docs.py")


def check_fit(args: list[str], workdir: Path) -> None:
    if args in (["--help"], ["-h"]):
        from medzero_pl.fit import main

        out = io.StringIO()
        with redirect_stdout(out):
            code = main(args)
        require(code == 0 and "Fields" in out.getvalue(), f"medzero_pl.fit {args[0]} did not print the field list")
        return
    try:
        compose(args)
    except UserError as err:
        raise Refused(f"error: {err}") from None


def check_plan(args: list[str], workdir: Path) -> None:
    """The planner's `--gpu` parses and its overrides compose as `fit`'s do."""
    from medzero_pl.plan.__main__ import parse_gpu, split_argv

    if args in (["--help"], ["-h"]):
        return
    try:
        overrides, gpu = split_argv(args)
        if gpu is not None:
            parse_gpu(gpu)
        compose(overrides)
    except UserError as err:
        raise Refused(f"error: {err}") from None


def check_lightning_cli(args: list[str], workdir: Path) -> None:
    from medzero_pl.__main__ import MedZeroCLI, main
    from medzero_pl.run import cli_config

    args = [str(workdir / a) if a.startswith("runs/") else a for a in args]
    for flag, value in zip(args, args[1:], strict=False):
        config = Path(value)
        if flag == "--config" and config.is_relative_to(workdir) and config.name == "cli_config.yaml":
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump(cli_config(compose([])), sort_keys=False))

    def stop(self: MedZeroCLI) -> None:
        raise _Parsed(self.config)

    # The CLI seeds every RNG and sets PL_GLOBAL_SEED before instantiating: the environment is put back afterwards.
    with (
        patch.object(MedZeroCLI, "before_instantiate_classes", stop),
        patch.object(sys, "argv", ["medzero_pl"]),
        patch.dict(os.environ),
    ):
        parse(lambda: main(args), stop_after_argparse=False)


def check_eval(args: list[str], workdir: Path) -> None:
    from medzero_pl.eval.__main__ import parse_args
    from medzero_pl.eval.benchmarks import BENCHMARKS

    namespace = parse(lambda: parse_args(args), stop_after_argparse=False)
    unknown = [b for b in (namespace.benchmarks if namespace else []) if b not in BENCHMARKS]  # parsed to a list
    if unknown:
        raise Refused(f"error: unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")


def check_export(args: list[str], workdir: Path) -> None:
    from medzero_pl.export import main

    parse(lambda: main(args))


def check_difficulty(args: list[str], workdir: Path) -> None:
    from medzero_pl.difficulty import parse_args

    namespace = parse(lambda: parse_args(args), stop_after_argparse=False)
    try:
        compose(namespace.overrides if namespace else [])
    except UserError as err:
        raise Refused(f"error: {err}") from None


def check_serve(args: list[str], workdir: Path) -> None:
    from medzero_pl.serve import parse_args

    parse(lambda: parse_args(args), stop_after_argparse=False)


def check_server_layout(args: list[str], workdir: Path) -> None:
    """Composed and planned as `--dry-run` does, on a node of the seed's 4 GPUs unless `--gpus` says otherwise."""
    from medzero_pl.server_layout import main

    args = [*args, *([] if "--dry-run" in args else ["--dry-run"]), *([] if "--gpus" in args else SEED_GPUS)]
    err = io.StringIO()
    with chdir(workdir), redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(args)
    if code:
        raise Refused(err.getvalue().strip())


def check_make(args: list[str], workdir: Path) -> None:
    dry_run = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True)
    if dry_run.returncode:
        raise Refused(dry_run.stderr.strip())
    for line in dry_run.stdout.splitlines():
        if "-m medzero_pl.fit" in line:
            check_fit(shlex.split(line.partition("-m medzero_pl.fit")[2]), workdir)


def check_pytest(args: list[str], workdir: Path) -> None:
    for path in (a.split("::")[0] for a in args if "/" in a or a.endswith(".py")):
        require((ROOT / path).exists(), f"pytest {path}: no such test file or folder")


MODULE_CHECKS: dict[str, Callable[[list[str], Path], None]] = {
    "medzero_pl.fit": check_fit,
    "medzero_pl.plan": check_plan,
    "medzero_pl": check_lightning_cli,
    "medzero_pl.eval": check_eval,
    "medzero_pl.export": check_export,
    "medzero_pl.difficulty": check_difficulty,
    "medzero_pl.serve": check_serve,
    "medzero_pl.server_layout": check_server_layout,
    "pytest": check_pytest,
}


def check_script(path: str, args: list[str], workdir: Path, direct: bool) -> None:
    script = ROOT / path
    require(script.is_file(), f"{path}: no such script")
    if script.suffix in (".sh", ".sbatch"):
        require(not direct or os.access(script, os.X_OK), f"{path} is run directly but is not executable")
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        require(syntax.returncode == 0, f"bash -n {path}: {syntax.stderr}")
        source = script.read_text()
        if "-m medzero_pl.fit" in source and '"$@"' in source:
            check_fit(args, workdir)
        return
    require(script.suffix == ".py", f"{path}: tests/test_docs.py checks .py, .sh and .sbatch scripts only")
    source = script.read_text()
    if "argparse" in source:
        require(run_script(script, ["--help"]) is None, f"{path} --help did not exit 0")
        run_script(script, args)
        return
    out = io.StringIO()
    with chdir(workdir), redirect_stdout(out), patch.object(sys, "argv", [str(script), "--help"]), suppress(SystemExit):
        runpy.run_path(str(script), run_name="__main__")
    summary = next(iter((ast.get_docstring(ast.parse(source)) or "").splitlines()), "")
    require(bool(summary) and summary in out.getvalue(), f"{path} --help does not print its docstring")


def run_script(script: Path, args: list[str]) -> argparse.Namespace | None:
    """Run an argparse script until it has parsed `args`."""
    with patch.object(sys, "argv", [str(script), *args]):
        return parse(lambda: runpy.run_path(str(script), run_name="__main__"))


def parse(run: Callable[[], object], stop_after_argparse: bool = True) -> argparse.Namespace | None:
    """Run a command-line program up to its parsed arguments; None when it exited 0 (`--help`).

    With `stop_after_argparse`, `ArgumentParser.parse_args` returns to here instead of to the program, so nothing runs
    after parsing; otherwise `run` must itself return the parsed arguments (or raise `_Parsed`).
    """
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    err = io.StringIO()
    patcher = patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop) if stop_after_argparse else None
    with chdir(ROOT), redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            if patcher:
                with patcher:
                    run()
                raise AssertionError("the program finished without parsing its arguments")
            return run()
        except _Parsed as parsed:
            return parsed.namespace
        except SystemExit as stopped:
            if stopped.code in (0, None):
                return None
            raise Refused(err.getvalue().strip() or f"exit code {stopped.code}") from None


def require(ok: bool, message: str) -> None:
    """A failed check with only its message (no assertion rewriting noise in the report)."""
    if not ok:
        raise AssertionError(message)


def matches(expected: str, actual: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, expected.split("..."))), actual) is not None


# ------------------------------------------------------------------------------------------------- the tests
BLOCKS = [b for path in DOCS for b in fenced_blocks(path) if b.tag in SHELL_TAGS]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_every_documented_command_runs_as_far_as_it_can_without_training(block: Block, tmp_path):
    if block.skip:
        pytest.skip(block.skip)
    assert commands(block), f"{block.name}: no command in the block (tag output and other text ```text)"
    for command in commands(block):
        problem = problem_with(command, tmp_path)
        if problem:
            pytest.fail(f"{block.path.name}:{command.line}: {command.text}\n  {problem}", pytrace=False)


def problem_with(command: Command, workdir: Path) -> str | None:
    """What is wrong with a documented command, or None."""
    try:
        for argv in simple_commands(command.text):
            check(argv, workdir)
    except Refused as refused:
        if command.expected_error and matches(command.expected_error, str(refused)):
            return None
        return (
            f"documented: {command.expected_error}\n  actual:     {refused}" if command.expected_error else str(refused)
        )
    except AssertionError as err:
        return str(err)
    return f"documented to fail with: {command.expected_error}" if command.expected_error else None


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    fenced, found = False, set()
    for line in path.read_text().splitlines():
        fenced ^= bool(FENCE.match(line))
        if not fenced and (heading := re.match(r"#{1,6}\s+(.*)", line)):
            found.add(github_anchor(heading.group(1)))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_relative_links_point_at_files_and_headings_that_exist(doc: Path):
    broken = []
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (doc.parent / file).resolve() if file else doc
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


# ------------------------------------------------------------------------ the checker catches what it should
@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        ("python -m medzero_pl.fit grpo.num_generation=3", "unknown key 'grpo.num_generation'"),
        ("python -m medzero_pl.fit experiment=medqa_usmle_v2", "medqa_usmle_v2"),
        ("scripts/torchrun_example.sh experiment=medqa_usmle grpo.beta=-1", "grpo.beta=-1.0: expected >= 0"),
        ("python scripts/no_such_script.py --help", "no_such_script.py: no such script"),
        ("python scripts/bench_grpo.py --no-such-flag", "unrecognized arguments: --no-such-flag"),
        ("make no-such-target", "No rule to make target 'no-such-target'"),
        ("make demo ARGS=grpo.num_generation=3", "unknown key 'grpo.num_generation'"),
        ("python -m medzero_pl.eval --model m --benchmarks medqa,no_such_benchmark", "no_such_benchmark"),
        ("python -m medzero_pl.export only_one_argument", "the following arguments are required: out_dir"),
        ("python -m medzero_pl fit --config conf/cli/no_such.yaml", "no_such.yaml"),
        ("python -m pytest tests/no_such_test.py", "no such test file"),
        ("frobnicate --all", "unknown command 'frobnicate'"),
        ("python -m medzero_pl.fit <no_such_placeholder>", "unknown placeholder <no_such_placeholder>"),
    ],
)
def test_a_command_naming_something_that_does_not_exist_fails(command: str, complaint: str, tmp_path):
    with pytest.raises((Refused, AssertionError)) as err:
        for argv in simple_commands(command):
            check(argv, tmp_path)
    assert complaint in str(err.value)


def test_conventions_skip_markers_placeholders_optional_arguments_and_expected_errors(tmp_path):
    doc = tmp_path / "guide.md"
    doc.write_text(
        "<!-- docs-test: skip needs a GPU -->\n```bash\nnvidia-smi\n```\n"
        "```bash\npython -m medzero_pl.export <checkpoint> \\\n    out   # a comment\n```\n"
        "```text\nGRPO: 100%\n```\n"
        "```console\n$ python -m medzero_pl.fit optim.lr=-1\nerror: invalid configuration: optim.lr=-1.0: ...\n```\n"
        "```bash\npython scripts/bench_grpo.py --forward-only [--layers 4]\n```\n"
    )
    skipped, export, text, console, optional = fenced_blocks(doc)
    assert skipped.skip == "needs a GPU" and text.tag == "text"
    assert commands(export) == [Command(6, "python -m medzero_pl.export <checkpoint>      out   # a comment")]
    assert simple_commands(commands(export)[0].text) == [
        ["python", "-m", "medzero_pl.export", "runs/default/checkpoints/last.ckpt", "out"]
    ]
    [expected] = commands(console)
    assert expected.expected_error == "error: invalid configuration: optim.lr=-1.0: ..."
    with pytest.raises(Refused) as refused:
        check(simple_commands(expected.text)[0], tmp_path)
    assert matches(expected.expected_error, str(refused.value))
    assert not matches("error: invalid configuration: trainer.max_steps=0 ...", str(refused.value))
    assert simple_commands(commands(optional)[0].text)[0][-3:] == ["--forward-only", "--layers", "4"]
