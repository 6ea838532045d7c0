"""Pieces of the reference trainer (train.py) that keep a run from going silently wrong: the
output directory (`run_dir`), resume compatibility (`resume`) and the kinds of model it trains
(`tasks`)."""
