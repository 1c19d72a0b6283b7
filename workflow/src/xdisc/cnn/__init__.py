"""Stage: the CNN: station images, the network, training and prediction."""
