"""One process of a 2-process sweep on localhost (CPU collectives through gloo).

Run by tests/test_sweep.py: two copies with LSX_COORDINATOR, LSX_NUM_PROCESSES=2,
LSX_PROCESS_ID=0/1 and 4 host devices each train the same sharded sweep into one
workdir (argv[1]); members and data are sharded across both processes.
"""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from conftest import small_sweep_config  # noqa: E402
from lsx import train as lt  # noqa: E402


if __name__ == "__main__":
  import jax
  data = int(sys.argv[2]) if len(sys.argv) > 2 else 1
  lt.train(small_sweep_config("sharded", data), sys.argv[1], write_figures=False)
  print(f"process {jax.process_index()} of {jax.process_count()} done, "
        f"{jax.device_count()} devices in the mesh", flush=True)
