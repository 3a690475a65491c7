"""Diffusion models: a denoiser family on the one runner, its samplers and inversions.

  UNet, Conv3x3, timestep_embedding, h_shape                 lsx.diffusion.unet
  linear_schedule, eps_loss, ddim_sample, ddim_invert,
  ddpm_sample, dpm_encode, to_model, to_image                lsx.diffusion.process
  the 'diffusion' family (build_diffusion), denoiser         lsx.diffusion.family

docs/diffusion.md has the model, the process and the measured figures.
"""
from lsx.diffusion.process import (Schedule, ddim_invert, ddim_sample, ddim_timesteps,
                                   ddpm_sample, dpm_encode, eps_loss, linear_schedule,
                                   q_sample, to_image, to_model)
from lsx.diffusion.unet import Conv3x3, UNet, h_shape, timestep_embedding

__all__ = ["Schedule", "ddim_invert", "ddim_sample", "ddim_timesteps", "ddpm_sample",
           "dpm_encode", "eps_loss", "linear_schedule", "q_sample", "to_image", "to_model",
           "Conv3x3", "UNet", "h_shape", "timestep_embedding"]
