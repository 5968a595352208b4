r"""Writes the method's TFF computations as serialized files, with a manifest.

  .venv/bin/python -m experiments.export --output_dir=results/export \
      --flagfile=experiments/configs/shakespeare.flags

Writes initialize.pb, round.pb, personalize.pb and evaluate.pb (serialized
`tff` Computation protos) and manifest.json (each one's type signature and
federated intrinsics) for the model of --model and the vocabulary of
--vocab_size (the preset's by default), with the training flags of
`common_flags`. See `gpfl_tff.export` for what each computation is.
"""

import os

from absl import flags

from data import dataset_flags
from experiments import cli
from experiments import common_flags
from gpfl_tff import export
from gpfl_tff.data import text
from gpfl_tff.models import language_model

OUTPUT_DIR = flags.DEFINE_string('output_dir', 'results/export',
                                 'Where the computations are written.')


def main(argv):
  del argv
  preset = common_flags.preset()
  vocab_size = (dataset_flags.VOCAB_SIZE.value
                if dataset_flags.VOCAB_SIZE.present else preset.vocab_size)
  if vocab_size < 1:
    cli.fail(f'--vocab_size must be at least 1, got {vocab_size}')
  try:
    training_config = common_flags.training_config()
  except ValueError as e:
    cli.fail(str(e))
  if os.path.exists(OUTPUT_DIR.value) and not os.path.isdir(OUTPUT_DIR.value):
    cli.fail(f'--output_dir={OUTPUT_DIR.value} is a file')
  model_fn = language_model.build_model_fn(
      preset, vocab_size + len(text.SPECIAL_TOKENS), seed=common_flags.SEED.value)
  manifest = export.export(export.computations(model_fn, training_config),
                           OUTPUT_DIR.value)
  for name, entry in manifest.items():
    print(f'{name}: {entry["file"]}; intrinsics: '
          f'{", ".join(entry["intrinsics"])}')
  print(f'wrote {OUTPUT_DIR.value}/{export.MANIFEST}')


if __name__ == '__main__':
  cli.run(main)
