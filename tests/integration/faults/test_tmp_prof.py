import time
import pytest

@pytest.mark.parametrize("i", range(6))
def test_p(gate, i):
    t = time.perf_counter()
    s, b = gate.compare("shuxun")
    t1 = time.perf_counter()
    s, b = gate.compare("shuxun")
    t2 = time.perf_counter()
    gate.record(b["request_id"])
    t3 = time.perf_counter()
    print(f"\ncold {t1-t:.3f} warm {t2-t1:.3f} record {t3-t2:.3f}")
