"""LatentCLR with the public setup (latentclr @f02a70d, conf/) on the built-in scenes,
its generator a style-modulated VAE decoder (configs/vae_scenes_style.py):

  python -m experiments.discover --config configs/latentclr_scenes.py
  python -m experiments.discover --config configs/latentclr_scenes.py:lsx   # lsx's loss form

The public defaults: K = 32 directions, batch 32, 10,000 iterations, torch Adam 1e-3 with
weight decay 1e-3 (coupled L2: optim 'adam_l2'), directions trained on z ~ N(0, I), the learning rate x0.2 at 1,000 and 5,000 iterations, the loss as the public
code computes it (convention 'reference': exp(sim * 0.5), unit features differenced), the
features of the generator's first convolution after its mapping network (StyleGAN2's
conv1: the style decoder's first ConvT4S2), nonlinear conditional directions. What still
differs from the public model: lsx's nonlinear direction network is a 2-layer MLP with
GELU per direction, the public one 3 layers with batch norm and ReLU.
"""
from configs import common
from configs import latentclr_sprites


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "lsx"))
  c = latentclr_sprites.get_config("smoke" if "smoke" in parts else "")
  with c.unlocked():
    c.workdir = "workdirs/latentclr_scenes" + ("_lsx" if "lsx" in parts else "")
    c.decoder = dict(workdir="workdirs/vae_scenes_style", config="configs/vae_scenes_style.py")
    ref = "lsx" not in parts
    c.directions.update(num=32, kind="nonlinear", features="decoder:ConvT4S2_0",
                        convention="reference" if ref else "lsx",
                        codes="prior" if ref else "encoder")
    # the public optimizer: torch Adam with weight_decay (coupled L2); lsx's: AdamW
    c.optim.update(name="adam_l2" if ref else "adamw", lr_decay_steps=(1000, 5000),
                   lr_decay_factor=0.2)
    c.hp.update(lr=1e-3, weight_decay=1e-3)
    c.train.update(steps=10000, batch_size=32, chunk=100, ckpt_every=1000)
    c.sweep.seed = (0, 1, 2)
    c.eval.protocol = "reference"
    if "smoke" in parts:
      c.directions.num = 3
      c.sweep.seed = (0, 1)
      c.optim.lr_decay_steps = (2,)
      c.train.update(steps=4, chunk=2, ckpt_every=2, batch_size=4)
  return c
