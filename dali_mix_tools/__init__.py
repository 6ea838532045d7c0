"""The command-line tools built on `dali_mix` and the ready-made `pipelines`: the `dali-mix`
command (`cli`: data, check-data, preview, evaluate, plot), the preview grid (`preview`), the
training-curve plot (`plot`) and the reference trainer's pieces (`training`, used by train.py).

The library `dali_mix` never imports this package (nor `pipelines`); `python -m dali_mix_tools`
is the `dali-mix` command.
"""
