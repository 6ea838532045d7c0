"""Pieces of the reference trainer (train.py) that keep a run from going silently wrong: the
output directory (`run_dir`), resume compatibility (`resume`), the kinds of model it trains
(`tasks`) and unreadable training data (`bad_data`)."""
