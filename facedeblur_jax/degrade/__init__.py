"""On-device degradation: motion kernels, blur, noise, augmentation."""
