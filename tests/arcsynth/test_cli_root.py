"""The root of the `arcsynth` command line: help, version, how options read."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from arcsynth import __version__


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_at_every_level(cli_app, runner, flag):
    for args in ([], ["verify"], ["tasks"], ["tasks", "list"], ["score"], ["solve"], ["show"], ["bench"]):
        result = runner.invoke(cli_app, [*args, flag])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(cli_app, runner, flag):
    result = runner.invoke(cli_app, [flag])
    assert result.exit_code == 0
    assert result.output.strip() == f"arcsynth {__version__}"


def test_flags_do_not_show_a_value_type_and_options_do(cli_app, runner):
    out = runner.invoke(cli_app, ["verify", "--help"], terminal_width=200).output
    json_line = next(line for line in out.splitlines() if "--json" in line)
    assert "<bool>" not in json_line
    timeout_line = next(line for line in out.splitlines() if "--pair-timeout" in line)
    assert "<float>" in timeout_line


def test_help_shows_no_markup_source(cli_app, runner):
    for args in (["solve", "--help"], ["replay", "--help"], ["show", "--help"]):
        out = runner.invoke(cli_app, args, terminal_width=200).output
        assert "``" not in out, args
        assert "Default: -." not in out and "OUT_ROOT" in out or args[0] == "show"


def test_dataset_help_lists_every_builtin_dataset(cli_app, runner):
    from arcsynth.datasets import BUILTIN_DATASETS

    out = " ".join(runner.invoke(cli_app, ["verify", "--help"], terminal_width=120).output.split())
    out = re.sub(r"[│ ]+", " ", out)
    for name in BUILTIN_DATASETS:
        assert name in out, name


def test_consoles_never_turn_names_into_emoji():
    from arcsynth.cli.common import stdout_console
    from arcsynth.cli.show import Out

    for console in (stdout_console(), Out(plain=False).console):
        console.force_terminal = True
        with console.capture() as cap:
            console.print("arc1:train: 4 of 400 tasks; arc2:train:score:")
        assert "arc1:train: 4 of 400 tasks" in cap.get()
        assert "\N{STEAM LOCOMOTIVE}" not in cap.get() and "\N{RAILWAY CAR}" not in cap.get()


def test_help_starts_without_heavy_imports():
    # `arcsynth --help` must not import torch, transformers or the sandbox.
    code = "import sys; from arcsynth.cli import app; print(sorted(m for m in ('torch', 'transformers', 'sandbox', 'textual', 'httpx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_verify_help_documents_its_exit_statuses(cli_app, runner):
    out = " ".join(runner.invoke(cli_app, ["verify", "--help"], terminal_width=200).output.split())
    assert "Exit status: 0 when every train pair passes, 1 when some train pair is wrong" in out
    assert "2 for bad input" in out


@pytest.mark.parametrize("args", [
    ["bench", "pipeline", "--tasks", "0"], ["bench", "pipeline", "--repeat", "0"], ["bench", "pipeline", "--samples", "-2"],
    ["bench", "sandbox", "--n", "0"], ["bench", "sandbox", "--workers", "-3"], ["bench", "search", "--p-know", "2"],
    ["bench", "agent", "--max-tokens", "0"], ["bench", "viewer", "--candidates", "0"],
])
def test_benchmark_options_out_of_range_are_usage_errors(cli_app, runner, args):
    # Refused before any work starts: a count of 0 used to end in a ZeroDivisionError traceback.
    result = runner.invoke(cli_app, args, terminal_width=200)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{args[2]}'" in result.output and "Traceback" not in result.output


def test_the_cli_starts_with_a_typer_that_has_no_option_type_display(run_python):
    # Older Typer releases (still in some GPU images) have no TyperOption.display_type_rich;
    # the command line must start there too, not crash on import.
    out = run_python(
        "import sys, typer.core",
        "for cls in typer.core.TyperOption.__mro__:",
        "    if 'display_type_rich' in vars(cls):",
        "        delattr(cls, 'display_type_rich')",
        "from arcsynth.cli import main",
        "sys.argv = ['arcsynth', '--version']  # help would call the method this Typer has been stripped of",
        "main()",
        timeout=60,
    )
    assert out.strip() == f"arcsynth {__version__}"


@pytest.mark.parametrize(
    "args, named",
    [
        (["--device", "cuda:7"], "CUDA is not available"),  # these machines have no GPU
        (["--model", "/no/such/model/folder"], "does not exist"),
    ],
)
def test_bench_agent_names_a_model_or_device_it_cannot_use(cli_app, runner, args, named):
    if named.startswith("CUDA"):
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    result = runner.invoke(cli_app, ["bench", "agent", *args], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert named in result.output and args[1] in result.output and "Traceback" not in result.output
