"""Answers without a language model: the chance floor and the score baselines (PatchCore, WinCLIP, AnomalyCLIP)."""
