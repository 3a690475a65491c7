"""Post-hoc potential flows (Song et al. 2023) on the built-in scenes, with the public setup
of configs/flows_sprites.py:reference on a plain wide VAE of scenes
(configs/vae_scenes_wide.py, trained first when absent):

  python -m experiments.flows --config configs/flows_scenes.py
  python -m experiments.flows --config configs/flows_scenes.py:seeds   # x 3 seeds
  python -m experiments.flows --config configs/flows_scenes.py:lsx     # lsx's objective form
"""
from configs import common
from configs import flows_sprites


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "seeds", "lsx"))
  c = flows_sprites.get_config(",".join(["reference"] + sorted(parts - {"lsx"})))
  with c.unlocked():
    c.workdir = c.workdir.replace("flows_sprites", "flows_scenes") + ("_lsx" if "lsx" in parts else "")
    c.decoder = dict(workdir="workdirs/vae_scenes_wide", config="configs/vae_scenes_wide.py")
    if "lsx" in parts:
      c.flows.convention = "lsx"
  return c
