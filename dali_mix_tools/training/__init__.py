"""Pieces of the reference trainer (train.py) that keep a run from going silently wrong: the
output directory and its writes (`run_dir`), resume and evaluate compatibility (`resume`), the
number of classes (`classes`), the kinds of model it trains (`tasks`) and training data it
does not use (`bad_data`)."""
