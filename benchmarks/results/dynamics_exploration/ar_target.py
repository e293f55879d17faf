"""Probe: autoregressive training pattern with the loss on the target token only (history out of the loss)."""
import sys, runpy, torch
import dforce.diffusion.noise_levels as nl
orig = nl._single
def patched(kind, batch, tokens, history_len, device, generator):
    t, m = orig(kind, batch, tokens, history_len, device, generator)
    if kind == "autoregressive":
        # the target is the last token in the loss mask
        idx = m.long().cumsum(1).argmax(1, keepdim=True)
        m = torch.zeros_like(m).scatter_(1, idx, True)
    return t, m
nl._single = patched
sys.argv = ["probe.py", "schedules"] + sys.argv[1:]
runpy.run_path("probe.py", run_name="__main__")
