"""Run logs name the machine: the CPU model from /proc/cpuinfo, with a fallback where there is none."""

import json
import platform

from finemem_lib.infra import machine
from finemem_lib.infra.provenance import host_info, provenance

X86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n"
ARM = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd0c\n\nHardware\t: BCM2835\nModel\t: Raspberry Pi 4 Model B\n"


def test_cpu_model_is_read_from_cpuinfo():
    assert machine.cpu_model_from_cpuinfo(X86) == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert machine.cpu_model_from_cpuinfo(ARM) == "Raspberry Pi 4 Model B"
    assert machine.cpu_model_from_cpuinfo("processor\t: 0\nmodel name\t:\n") is None


def test_without_cpuinfo_the_platform_names_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "absent")
    machine.cpu_model.cache_clear()
    try:
        assert machine.cpu_model() == (platform.processor() or platform.machine() or "unknown")
    finally:
        machine.cpu_model.cache_clear()


def test_every_run_log_records_the_cpu_model():
    info = machine.machine_info()
    assert info["cpu_model"] and info["machine"] == platform.machine()
    assert host_info()["cpu_model"] == info["cpu_model"]
    assert provenance({"name": "smoke"}, 0)["host"]["cpu_model"] == info["cpu_model"]


def test_the_sft_manager_and_the_evaluation_records_name_the_machine(tmp_path):
    from types import SimpleNamespace

    from finemem_lib.agents.policy import MANAGER_META_FILE
    from finemem_lib.agents.sft import train_sft_manager
    from finemem_lib.data.synthetic import build_synthetic
    from finemem_lib.evaluation.runner import _header
    from tests.test_sft import KNOBS, _tiny_cfg

    bench = build_synthetic(KNOBS, seed=0)
    out = train_sft_manager(_tiny_cfg(max_steps=1), bench["train"], tmp_path / "sft")
    meta = json.loads((out / MANAGER_META_FILE).read_text())
    assert meta["machine"]["cpu_model"] == machine.cpu_model()

    benchmark = SimpleNamespace(name="memalpha", fingerprint=lambda: "data", skipped=[])
    identity = {"fingerprint": "none"}
    method = SimpleNamespace(name="rag_bm25", kind="baseline", role="", model=None, identity=lambda: identity)
    assert _header({"name": "smoke"}, benchmark, method)["machine"]["cpu_model"] == machine.cpu_model()
