"""Directions in the h-space of the scenes denoiser, scored like a VAE decoder's
(configs/hspace_sprites.py has the sections; the VAE beside is the wide VAE of scenes the
flows claims use, configs/vae_scenes_wide.py).

  python -m experiments.hspace --config configs/hspace_scenes.py
  python -m experiments.hspace --config configs/hspace_scenes.py:cpu     # 2-core budget
"""
from configs import common
from configs import hspace_sprites


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "cpu"))
  c = hspace_sprites.get_config(arg)
  with c.unlocked():
    if "smoke" not in parts:
      c.workdir = "workdirs/hspace_scenes"
      c.diffusion.update(workdir="workdirs/diffusion_scenes",
                         config="configs/diffusion_scenes.py")
    c.vae.config = "configs/vae_scenes_wide.py"
  return c
