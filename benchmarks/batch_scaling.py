r"""How the plain-TF training step of a preset scales with the batch size.

  .venv/bin/python -m benchmarks.batch_scaling --model=small

Prints, for each batch size, the median seconds of one training step on
random windows and the GFLOP/s it achieves (FLOPs as in `hardware`), beside the
machine's matmul peak: what bounds the reference's fraction of peak.
"""

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import hardware
from benchmarks import plain_tf
from gpfl_tff.models import language_model

MODEL = flags.DEFINE_enum('model', 'small', list(language_model.PRESETS),
                          'Model size preset.')
BATCHES = flags.DEFINE_list('batch_sizes', ['16', '64', '256'],
                            'Batch sizes (sequences) to time.')
STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps per batch size.')


def main(argv):
  del argv
  preset = language_model.PRESETS[MODEL.value]
  num_tokens = preset.vocab_size + 4
  step = plain_tf.keras_training_step(
      language_model.build_keras_model(preset, num_tokens))

  forward = hardware.preset_forward_flops(preset, num_tokens)
  peak = hardware.matmul_peak_gflops()
  print(f'model={MODEL.value} peak_gflops={peak:.1f}')
  for batch in (int(b) for b in BATCHES.value):
    x = tf.constant(np.random.default_rng(0).integers(
        4, num_tokens, size=(batch, preset.seq_len)), tf.int32)
    step(x).numpy()
    seconds = hardware.median_seconds(lambda: step(x), STEPS.value)
    gflops = hardware.stage_flops(forward, batch * preset.seq_len, 0) / seconds / 1e9
    print(f'batch={batch} step_s={seconds:.4f} gflops={gflops:.2f} '
          f'fraction_of_peak={gflops / peak:.3f}')


if __name__ == '__main__':
  app.run(main)
