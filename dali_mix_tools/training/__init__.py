"""Pieces of the reference trainer (train.py) that keep a run from going silently wrong: the
output directory and its writes (`run_dir`), resume and evaluate compatibility (`resume`), the
number of classes (`classes`), the kinds of model it trains (`tasks`) and training data it
does not use (`bad_data`); and the rest of what it needs that is not about pixels (`support`:
process environment, models, learning-rate schedule, top-1 evaluation, RNG state; `evaluate`:
the `dali-mix evaluate` command)."""
