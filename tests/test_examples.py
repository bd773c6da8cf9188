"""The scripts in examples/ run, finish, and show what they claim.

They run on the compiled core (the reference core when FASTGRAD_TEST_PURE_ONLY=1,
on a machine without a C compiler)."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args, tmp_path):
    pure = os.environ.get("FASTGRAD_TEST_PURE_ONLY") == "1"
    env = dict(os.environ, FASTGRAD_BACKEND="python" if pure else "compiled")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                            cwd=str(tmp_path), env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _has(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def test_nielsen_231_separates_what_a_line_cannot(tmp_path):
    out = run_example("nielsen_231.py", tmp_path=tmp_path)
    line, net = map(float, re.search(r"at most ([\d.]+) .* reached ([\d.]+)", out).groups())
    assert net >= 0.9 and net > line + 0.2, out


def test_lecture_sgd_compares_the_three_ways(tmp_path):
    png = tmp_path / "curves.png"
    out = run_example("lecture_sgd.py", "--out", str(png), tmp_path=tmp_path)
    rows = {m.group(1).strip(): (int(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^(.+?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)}
    assert rows["full batch GD (B=200)"][0] == 1            # one step per epoch
    assert rows["SGD (B=1)"][0] == 200                      # n steps per epoch
    assert rows["mini-batch (B=16)"][0] == 13               # ceil(200 / 16)
    for name, (_, first, last) in rows.items():
        assert last < first and last < 0.05, (name, out)
    if _has("matplotlib"):
        assert png.stat().st_size > 10_000
    else:
        assert "matplotlib" in out


@pytest.mark.skipif(not _has("sklearn"), reason="scikit-learn provides the digits data")
def test_digits_reaches_95_percent(tmp_path):
    png = tmp_path / "history.png"
    out = run_example("digits.py", "--out", str(png), tmp_path=tmp_path)
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", out).group(1))
    assert accuracy >= 0.95, out
    epochs = int(re.search(r"epochs run: (\d+)", out).group(1))
    assert epochs < 60                                      # early stopping ended it
    if _has("matplotlib"):
        assert png.stat().st_size > 10_000


@pytest.mark.skipif(not _has("sklearn"), reason="scikit-learn provides the digits data")
def test_digits_cnn_reaches_98_percent(tmp_path):
    out = run_example("digits_cnn.py", tmp_path=tmp_path)
    accuracy = float(re.search(r"test accuracy: ([\d.]+)", out).group(1))
    assert accuracy >= 0.98, out
    assert re.search(r"epochs: 10,", out), out


def test_char_lm_beats_the_unigram_entropy_and_samples(tmp_path):
    out = run_example("char_lm.py", "--quick", tmp_path=tmp_path)
    unigram = float(re.search(r"unigram entropy: ([\d.]+)", out).group(1))
    before = float(re.search(r"held-out loss before training: ([\d.]+)", out).group(1))
    after = float(re.search(r"held-out loss after training: ([\d.]+)", out).group(1))
    assert before > unigram                     # an untrained model knows nothing
    assert after < unigram - 0.3, out           # context helps, well past character counts
    samples = re.findall(r"^sample: '(.*)'$", out, re.M)
    assert len(samples) == 3 and all(len(s) > 48 for s in samples), out
    assert all(set(s) <= set("abcdefghijklmnopqrstuvwxyz ") for s in samples), out


def test_lstm_sine_predicts_the_next_value(tmp_path):
    out = run_example("lstm_sine.py", "--quick", tmp_path=tmp_path)
    mse, naive = map(float, re.search(r"one-step mse: ([\d.]+) \(naive last-value forecast: "
                                      r"([\d.]+)\)", out).groups())
    assert mse < 0.01 and mse < naive / 3, out
    pairs = re.findall(r"^  ([+-][\d.]+)  ([+-][\d.]+)$", out, re.M)
    assert len(pairs) == 10
    assert max(abs(float(a) - float(b)) for a, b in pairs[:5]) < 0.2, out
