"""Command-line spelling: csconv's own flags and DeepLab2's absl flags both work."""

import pytest

from csconv import cli
from csconv.cli.convert import options_from_args
from csconv.cli.flags import normalise_argv


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--create_panoptic_data=false"], ["--create_panoptic_data=false"]),
        (["--nocreate_panoptic_data"], ["--create_panoptic_data=false"]),
        (["--create-panoptic-data"], ["--create_panoptic_data=true"]),
        (["--no-treat-crowd-as-ignore"], ["--treat_crowd_as_ignore=false"]),
        (["--cityscapes-root=R", "--output_dir", "O"], ["--cityscapes_root=R", "--output_dir", "O"]),
        (["--overwrite"], ["--overwrite=true"]),
    ],
)
def test_flag_spellings_are_normalised(argv, expected):
    assert normalise_argv(argv) == expected


def parse(*argv):
    argv = normalise_argv(list(argv))
    return cli.build_parser("convert").parse_args(["convert", *argv])


def test_deeplab2_command_line_parses():
    args = parse("--cityscapes_root=R", "--output_dir=O", "--create_panoptic_data=false", "--treat_crowd_as_ignore=false")
    options = options_from_args(args)
    assert (args.cityscapes_root, args.output_dir) == ("R", "O")
    assert options.task.value == "semantic" and options.treat_crowd_as_ignore is False


def test_defaults_are_the_references():
    args = parse("--cityscapes_root", "R", "--output_dir", "O")
    options = options_from_args(args)
    assert options.task.value == "panoptic" and options.treat_crowd_as_ignore and options.label_divisor == 1000
    assert args.num_shards == 10 and args.sink == "tfrecord" and args.splits is None  # those present


def test_bad_boolean_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--cityscapes_root=R", "--output_dir=O", "--create_panoptic_data=maybe"])
    assert exit_info.value.code == 2
    assert "expected true or false" in capsys.readouterr().err


def test_missing_root_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["--cityscapes_root", str(tmp_path / "nope"), "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err


def test_sinks_lists_the_builtin_tfrecord_sink(capsys):
    assert cli.main(["sinks"]) == 0
    assert "tfrecord" in capsys.readouterr().out


def test_every_command_is_reachable_from_the_console_script(tmp_path):
    import subprocess
    import sys

    from csconv.synthetic import generate_dataset

    def csconv(*args):
        return subprocess.run([sys.executable, "-m", "csconv", *args], capture_output=True, text=True, timeout=120)

    for command in ("convert", "sinks", "demo", "synth", "verify", "prework", "eval-gt", "to-evalid", "preview", "stats"):
        result = csconv(command, "--help")
        assert result.returncode == 0 and "usage: csconv " + command in result.stdout, command
    root, out = tmp_path / "cs", tmp_path / "out"
    generate_dataset(root, {"train": 2, "val": 2}, width=64, height=32)
    assert csconv("--cityscapes_root", str(root), "--output_dir", str(out), "--quiet").returncode == 0
    assert csconv("verify", str(out)).returncode == 0
    assert csconv("preview", str(out), "--split", "val", "--index", "1", "-o", str(tmp_path / "p.png")).returncode == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    stats = csconv("stats", str(out))
    assert stats.returncode == 0 and "road" in stats.stdout
    assert csconv("eval-gt", "--cityscapes_root", str(root), "--output_dir", str(tmp_path / "gt")).returncode == 0
    assert (tmp_path / "gt" / "cityscapes_panoptic_val.json").exists()
    assert csconv("prework", "--cityscapes_root", str(root), "--quiet").returncode == 0
    assert (root / "gtFine" / "cityscapes_panoptic_val_trainId.json").exists()


def test_demo_converts_with_every_sink_and_reads_back(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "csconv", "demo", str(tmp_path / "demo"), "--width", "128",
                             "--height", "64"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    from csconv.plugins import sinks

    for sink in [name for name, entry in sinks().items() if entry.sink_class.missing_requirement() is None]:
        line = next(l for l in result.stdout.splitlines() if l.startswith(sink))
        assert "13 records in 30 shards" in line and "identical to the tfrecord reference" in line
    assert "warning" not in result.stderr.lower()


def test_a_command_module_is_imported_only_when_it_runs():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from csconv.cli import main\n"
        "from csconv.cli.registry import COMMANDS\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('loaded:', *sorted(m for m, _ in COMMANDS.values() if 'csconv.cli.' + m in sys.modules))\n"
    )
    for argv, loaded in ((["--help"], []), (["stats", "--help"], ["stats"]), (["--bogus"], ["convert"])):
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
        assert done.stdout.splitlines()[-1].split() == ["loaded:", *loaded], (argv, done.stdout[-300:])
