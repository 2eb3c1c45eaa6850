"""From trials to a recommendation: the ladder walk (`walk`), whether a trial meets the target
(`verdict`), the decision and its reasons (`recommend`) and the examples needed to separate two
models (`sample_size`)."""
