"""cnerv encode / decode over several inputs (cli.batch): one output per input in a folder, a summary,
a failing clip reported while the others go on, every output checked before any work."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import moving_scene, run_cnerv, write_y4m

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_stream_v1_0.cnrv"  # 4 frames 48x32: decodes at once
FAST = ("--frames", "3", "--preset", "fast", "--epochs", "2", "--size", "S", "-q")


@pytest.fixture
def clips(tmp_path):
    """Two tiny y4m clips and a file of random bytes named like a video."""
    paths = []
    for name, seed in (("a.y4m", 0), ("b.y4m", 1)):
        write_y4m(tmp_path / name, moving_scene(3, 32, 48, seed=seed), 48, 32)
        paths.append(str(tmp_path / name))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 20)
    return paths[0], str(junk), paths[1]


def test_encode_several_writes_one_file_each_and_a_json_list(clips, tmp_path, capsys):
    a, _, b = clips
    out = tmp_path / "out"  # missing: created
    code, stdout, stderr = run_cnerv(capsys, "encode", a, b, "-o", f"{out}/", "--json", *FAST)
    assert code == 0, stderr
    results = json.loads(stdout)
    assert [r["input"] for r in results] == [a, b]
    assert [r["output"] for r in results] == [str(out / "a.cnrv"), str(out / "b.cnrv")]
    for r in results:  # the one-clip encode --json object, plus input and output
        assert r["bytes"] == Path(r["output"]).stat().st_size and r["frames"] == 3 and r["size"] == "S"
    assert sorted(p.name for p in out.iterdir()) == ["a.cnrv", "b.cnrv"]  # no temporary files left


def test_a_bad_clip_is_reported_the_others_written_exit_1(clips, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run_cnerv(capsys, "encode", *clips, "-o", str(out), "--json", *FAST)
    assert code == 1
    results = json.loads(stdout)
    assert [sorted(r) for r in results][1] == ["error", "input"]
    assert results[1]["input"] == clips[1] and "junk.mp4" in results[1]["error"]
    assert "\n" not in results[1]["error"] and results[1]["error"] in stderr
    assert "output" in results[0] and "output" in results[2]
    assert sorted(p.name for p in out.iterdir()) == ["a.cnrv", "b.cnrv"]


def test_text_mode_prints_each_clip_and_a_summary_line(clips, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run_cnerv(capsys, "encode", *clips, "-o", str(out), *FAST)
    assert code == 1
    lines = stdout.strip().splitlines()
    assert lines[0].startswith(str(out / "a.cnrv") + ": 3 frames 48x32")
    assert lines[-1] == f"encoded 2 of 3 clips into {out}; failed: {clips[1]}"
    assert stderr.count("cnerv: error:") == 1


def test_existing_outputs_are_refused_before_any_work_without_y(clips, tmp_path, capsys):
    a, _, b = clips
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.cnrv").write_bytes(b"keep")
    code, stdout, stderr = run_cnerv(capsys, "encode", a, b, "-o", str(out), "--json", *FAST)
    assert code == 1 and "b.cnrv exists: pass -y" in stderr and stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["b.cnrv"]  # a.cnrv not written either
    assert (out / "b.cnrv").read_bytes() == b"keep"
    code, stdout, stderr = run_cnerv(capsys, "encode", a, b, "-o", str(out), "--json", "-y", *FAST)
    assert code == 0, stderr
    assert (out / "b.cnrv").stat().st_size == json.loads(stdout)[1]["bytes"]


def test_two_inputs_with_one_stem_are_refused(clips, tmp_path, capsys):
    a = clips[0]
    other = tmp_path / "sub"
    other.mkdir()
    shutil.copy(a, other / "A.y4m")  # another folder, another case: the same output name
    code, _, stderr = run_cnerv(capsys, "encode", a, str(other / "A.y4m"), "-o", str(tmp_path / "out"), *FAST)
    assert code == 2 and "would both write" in stderr
    assert not (tmp_path / "out").exists()


def test_one_input_keeps_o_as_a_file(clips, tmp_path, capsys):
    a = clips[0]
    code, _, stderr = run_cnerv(capsys, "encode", a, "-o", f"{tmp_path}/", *FAST)
    assert code == 2 and "with one input, -o names the output file" in stderr
    code, _, stderr = run_cnerv(capsys, "decode", str(GOLDEN), "-o", str(tmp_path / "g.y4m"), "--format", "mkv")
    assert code == 2 and "--format" in stderr
    code, stdout, stderr = run_cnerv(capsys, "decode", str(GOLDEN), "-o", str(tmp_path / "g.y4m"), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["frames"] == 4  # one object, as before


def test_several_inputs_need_o_to_be_a_folder(clips, tmp_path, capsys):
    taken = tmp_path / "file"
    taken.write_bytes(b"")
    code, _, stderr = run_cnerv(capsys, "encode", clips[0], clips[2], "-o", str(taken), *FAST)
    assert code == 2 and "-o is a folder" in stderr
    code, _, stderr = run_cnerv(capsys, "encode", clips[0], clips[2], "-o", str(tmp_path / "x.cnrv"), *FAST)
    assert code == 2 and "end it with '/'" in stderr and not (tmp_path / "x.cnrv").exists()


def test_decode_several_into_a_folder(tmp_path, capsys):
    from cnervcodec.video_io import read_video

    sources = []
    for name in ("x.cnrv", "y.cnrv"):
        shutil.copy(GOLDEN, tmp_path / name)
        sources.append(str(tmp_path / name))
    broken = tmp_path / "z.cnrv"
    broken.write_bytes(GOLDEN.read_bytes()[:100])
    out = tmp_path / "videos"
    code, stdout, stderr = run_cnerv(capsys, "decode", *sources, str(broken), "-o", str(out), "--format", "y4m",
                                     "--json")
    assert code == 1  # the truncated file is reported; the others are written
    results = json.loads(stdout)
    assert [r.get("output") for r in results] == [str(out / "x.y4m"), str(out / "y.y4m"), None]
    assert results[0]["frames"] == 4 and "error" in results[2]
    assert read_video(out / "y.y4m").n_frames == 4
    code, stdout, stderr = run_cnerv(capsys, "decode", *sources, "-o", str(out))  # default --format mp4
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == f"decoded 2 of 2 clips into {out}"
    assert sorted(p.name for p in out.iterdir()) == ["x.mp4", "x.y4m", "y.mp4", "y.y4m"]


def test_ctrl_c_stops_the_whole_run(tmp_path):
    """A fit stopped by Ctrl-C (FitInterrupted, a CnervError) and a second Ctrl-C are not one clip's failure."""
    import click

    from cnervcodec.cli.batch import BatchSpec, for_each_input
    from cnervcodec.fit import FitInterrupted

    calls = []

    @click.command()
    @click.argument("input_paths", nargs=-1)
    @click.option("-o", "--output")
    @click.option("-y", "--overwrite", is_flag=True)
    @click.option("--json", "as_json", is_flag=True)
    @for_each_input(BatchSpec("done", lambda options: ".out", lambda *args: None))
    def fake(input_path, output, overwrite, as_json):
        calls.append(input_path)
        raise stop

    for stop in (FitInterrupted("fit interrupted", None), KeyboardInterrupt()):
        calls.clear()
        with pytest.raises((FitInterrupted, click.exceptions.Abort)):  # click turns KeyboardInterrupt into Abort
            fake.main(["a", "b", "-o", str(tmp_path / "out"), "--json"], standalone_mode=False)
        assert calls == ["a"]
