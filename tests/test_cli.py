"""The ``facedeblur`` command line: every subcommand, its help text, the tool subcommands
run through the real entry point, one-line errors; the package layout it relies on."""

import ast
import json
import pathlib
import re
import sys

import pytest

from facedeblur_jax import cli
from facedeblur_jax.degrade import kernel_bank
from tests import processes
from tests.conftest import REPO_ROOT
from tests.data.conftest import write_face_tree

PACKAGE = REPO_ROOT / "facedeblur_jax"
COMMANDS = tuple(cli.COMMANDS)
# A dispatching subcommand's options are those of the command it dispatches to.
HELP_ARGV = {"data": ("data", "prepare", "celeba")}


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys):
    text = help_text(capsys)
    listed = re.findall(r"^    (\S+)", text, re.M)
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_defaults_and_no_developer_paths(capsys, command):
    text = help_text(capsys, *HELP_ARGV.get(command, (command,)))
    assert text.startswith(f"usage: facedeblur {command} ")
    options = re.findall(r"^  (--[\w-]+)", text, re.M)
    assert options, text
    if command not in (
        "train",
        "compare",
        "convert-vgg",
        "convert-mobilefacenet",
    ):  # required, flags only
        assert "(default: " in text, text
    for developer_path in (
        r"\.\./",
        r"\bshared/",
        r"/work\b",
        r"\bworkplace",
        r"\bleases?\b",
        r"\btools/",
    ):
        assert not re.search(developer_path, text), (command, developer_path)


def test_train_help_explains_overrides_and_the_config_forms(capsys):
    text = " ".join(help_text(capsys, "train").split())
    assert "--config.KEY=VALUE" in text and "--config.train.global_batch_size=32" in text
    assert "configs/NAME.py (the built-in NAME when no such file exists)" in text
    assert "paper, demo, tiny, gpu_short" in text
    # Training on one's own faces: the folder source, its root and its labels.
    assert "--config.data.source=folder --config.data.root=DIR" in text
    assert "--config.data.label_root=DIR/labels" in text


def test_demo_help_says_what_it_runs_its_defaults_and_how_long(capsys):
    text = " ".join(help_text(capsys, "demo").split())
    assert "bundled" in text and "PSNR/SSIM" in text
    assert "coarse 240, parsing_clear 80, parsing 80, fine 160, joint 60" in text  # the config
    assert "(default: demo)" in text and "(default: runs/demo)" in text
    assert "(default: not written)" in text
    assert "a few minutes on a 2-core CPU" in text


def test_eval_help_names_data_choices_without_paths(capsys):
    text = " ".join(help_text(capsys, "eval").split())
    assert "'sample' (the bundled faces) or a folder" in text
    assert "'facedeblur make-kernels'" in text
    assert "N test faces spread over the split (default: all)" in text


def test_data_help_lists_what_it_prepares(capsys):
    text = " ".join(help_text(capsys, "data").split())
    assert text.startswith("usage: facedeblur data ") and "{prepare}" in text
    assert "celeba: CelebA (img_celeba or img_align_celeba)" in text
    text = " ".join(help_text(capsys, "data", "prepare", "celeba").split())
    assert "--split" in text and "(default: 0.8,0.1,0.1)" in text and "(default: 128)" in text


def test_tool_subcommands_run_their_module(tmp_path, capsys, monkeypatch):
    """``make-kernels`` and ``params`` through ``facedeblur``, with a config given as the
    documented ``configs/NAME.py`` path from a folder that has no configs/."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bank.npz"
    argv = ["make-kernels", "--config", "configs/tiny.py", "--per-size", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    bank = kernel_bank.load_bank(out)
    assert bank.unique_sizes == (3, 5, 7) and len(bank) == 3
    capsys.readouterr()
    assert cli.main(["params", "--config", "tiny", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["generator_total"] > 0


def test_params_of_the_cvpr18_kind(capsys):
    """``facedeblur params --config cvpr18``: P and the one G (5 ResBlocks, no guide; 14
    input channels at 0.5×, 17 at 1×), no G_c / G_f rows and no paper total."""
    assert cli.main(["params", "--config", "cvpr18", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = report["counts"]
    assert report["kind"] == "cvpr18" and report["paper_total"] is None
    assert set(counts) == {"parsing", "generator", "generator_total", "disc"}
    conv11 = lambda cin: 11 * 11 * cin * 64 + 64
    body = 14 * (5 * 5 * 64 * 64 + 64) + 5 * 5 * 64 * 3 + 3  # 2 + 2·5 + 2 convs, conv_out
    assert counts["generator"] == conv11(14) + body + 4 * 4 * 3 * 3 + 3 + conv11(17) + body
    assert counts["generator_total"] == counts["parsing"] + counts["generator"]
    assert cli.main(["params", "--config", "cvpr18"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^G +3,118,937 ", table, re.M) and "total P+G" in table
    assert not re.search(r"^(G_c|G_f|D) ", table, re.M) and "do not apply" in table


def test_build_tfds_subcommand(tmp_path, capsys):
    root, labels = tmp_path / "faces", tmp_path / "labels"
    write_face_tree(root, labels, splits=(("train", 3), ("test", 2)))
    argv = ["build-tfds", "--root", str(root), "--label-root", str(labels)]
    assert cli.main([*argv, "--data-dir", str(tmp_path / "tfds")]) == 0
    assert "data set in" in capsys.readouterr().out
    from facedeblur_jax.data import tfds_builder

    stored = tfds_builder.TfdsSource(tmp_path / "tfds", split="train")
    assert len(stored) == 3 and stored[0]["name"] == "train/f000"


def test_tool_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["params", "--config.model.featurs=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "facedeblur params: error: unknown config override" in err
    missing = tmp_path / "nope"
    assert cli.main(["build-tfds", "--root", str(missing), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err and "build-tfds: error" in err
    assert cli.main(["make-kernels", "--out", str(tmp_path / "k.npz"), "--config", "x.py"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config file 'x.py' not found" in err
    # A usage error is one line too (no usage block), naming the help to read.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["make-kernels", "--per-size", "x"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("facedeblur make-kernels: error: argument --per-size: invalid int")
    assert line.endswith("(see 'facedeblur make-kernels --help')")


def test_train_without_a_data_root_names_the_key(tmp_path, capsys):
    argv = ["train", "--config", "configs/paper.py", "--workdir", str(tmp_path / "w")]
    assert cli.main([*argv, "--config.loss.vgg_weight=0"]) == 2  # (the VGG check comes first)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("facedeblur train: error: data.root must name the dataset folder")
    assert "facedeblur data prepare celeba" in err


def test_the_console_script_runs_a_subcommand():
    """``python -m facedeblur_jax.cli`` (what the ``facedeblur`` script calls) in a fresh
    process, from a folder outside the repository."""
    result = processes.run(
        [sys.executable, "-m", "facedeblur_jax.cli", "params", "--help"], cwd="/"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: facedeblur params")


def _modules(folder: pathlib.Path):
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def _is_module(dotted: str) -> bool:
    path = REPO_ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("part", ["bench", "commands", "configs", "data", "cli.py", "config.py"])
def test_no_private_names_across_modules_and_no_sys_path(part):
    """The benchmark and tool code imports the package as a package: no ``sys.path``
    edits, and no ``_private`` name of another module (as ``from m import _x`` or
    ``m._x``)."""
    target = PACKAGE / part
    files = [(target, ast.parse(target.read_text()))] if target.is_file() else _modules(target)
    found = []
    for path, tree in files:
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("facedeblur"):
                for a in node.names:
                    if a.name.startswith("_"):
                        found.append(f"{path.name}:{node.lineno} imports {a.name}")
                    elif _is_module(f"{node.module}.{a.name}"):
                        aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names if a.asname})
            elif isinstance(node, ast.Attribute) and node.attr == "path":
                if isinstance(node.value, ast.Name) and node.value.id == "sys":
                    found.append(f"{path.name}:{node.lineno} uses sys.path")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not found, found


def test_no_top_level_tools_or_configs_folder():
    """Tools are subcommands or ``facedeblur_jax.bench`` modules; configs are packaged."""
    assert not (REPO_ROOT / "tools").exists()
    assert not (REPO_ROOT / "configs").exists()
    assert (PACKAGE / "configs" / "paper.py").is_file()
