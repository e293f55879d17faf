"""Probe: the autoregressive pattern's history levels in [0, HMAX] instead of [0, 0.1]."""
import sys, runpy
import dforce.diffusion.noise_levels as nl
nl.HISTORY_LEVEL_MAX = float(sys.argv[1])
sys.argv = ["probe.py", "schedules"] + sys.argv[2:]
runpy.run_path("probe.py", run_name="__main__")
