"""Evaluation: FPR95 on patch pairs, pose accuracy of reconstructions."""
