"""`python -m dali_mix` is not the command line: the library never imports its tools. Says where
the `dali-mix` command is, in one line, and exits with status 1."""
import sys

sys.exit("error: the dali-mix command line is `dali-mix` (or `python -m dali_mix_tools`); "
         "`dali_mix` is the library you import in your pipeline")
