"""bfloat16 on the CPU only where the CPU has the instructions: elsewhere autocast emulates them, slower than
float32, so match.py, evaluate.py and the API refuse it in one line rather than run slowly."""

from pathlib import Path

import cv2
import pytest

from data.synthetic.texture import make_texture
from models import matcher as matcher_module
from models.matcher import LoFTRMatcher, checked_precision, cpu_has_bf16
from tests.helpers import refusal, run_here

ROOT = Path(__file__).resolve().parents[2]
X86_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw {extra}\nbugs\t\t: spectre_v1\n"
ARM_FEATURES = "processor\t: 0\nFeatures\t: fp asimd aes {extra}\n"


@pytest.mark.parametrize("text, expected", [
    (X86_FLAGS.format(extra=""), False),  # AVX2 and AVX-512F, no BF16: this session's machines
    (X86_FLAGS.format(extra="avx512_bf16"), True),  # Cooper Lake, Sapphire Rapids, Zen 4
    (X86_FLAGS.format(extra="amx_bf16 amx_tile"), True),
    (ARM_FEATURES.format(extra=""), False),
    (ARM_FEATURES.format(extra="bf16 i8mm"), True),  # Graviton 3, Neoverse V1
    (X86_FLAGS.format(extra="avx512_bf16_x"), False),  # a flag is a whole word
])
def test_the_cpus_bfloat16_instructions_are_read_from_its_flags(text, expected):
    assert cpu_has_bf16(text) is expected


def test_bf16_is_refused_on_a_cpu_without_it_and_taken_where_it_is_or_unknown(monkeypatch):
    monkeypatch.setattr(matcher_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match="no bfloat16 instructions"):
        checked_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="no bfloat16 instructions"):
        LoFTRMatcher.from_checkpoint(None, precision="bf16")
    assert checked_precision("fp32", "cpu") == "fp32" and checked_precision("bf16", "cuda") == "bf16"
    for known in (True, None):  # a CPU with the instructions, or one that cannot tell (not Linux)
        monkeypatch.setattr(matcher_module, "cpu_has_bf16", lambda known=known: known)
        assert LoFTRMatcher.from_checkpoint(None, precision="bf16").precision == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        checked_precision("int8", "cpu")


@pytest.mark.skipif(cpu_has_bf16() is not False, reason="this CPU has bfloat16 instructions (or cannot tell)")
def test_the_commands_refuse_bf16_on_this_cpu_in_one_line(tmp_path):
    """On this machine's CPU (no bfloat16 instructions): match.py --precision bf16 and evaluate.py precision=bf16
    stop with one line saying why, exit 2, nothing written; precision= with another matcher is refused too."""
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), make_texture(160, 120, seed=0))
    out = tmp_path / "m.npz"
    line = refusal(run_here(["match.py", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--random-weights",
                             "--device", "cpu", "--precision", "bf16", "--out", str(out)], ROOT), "--precision bf16")
    assert "bfloat16 instructions" in line and not out.exists()
    refusal(run_here(["evaluate.py", "matcher=loftr", "precision=bf16", f"out_dir={tmp_path / 'run'}"], ROOT),
            "precision bf16", "bfloat16 instructions")
    refusal(run_here(["evaluate.py", "matcher=sift", "precision=bf16", f"out_dir={tmp_path / 'sift'}"], ROOT),
            "precision=bf16 is for matcher=loftr")
    assert not (tmp_path / "run" / "summary.json").exists()
