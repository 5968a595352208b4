r"""The cross-entropy from plain ops against TensorFlow's fused kernel.

  .venv/bin/python -m benchmarks.cross_entropy --reps=21

`gpfl_tff.models.metrics.cross_entropy` replaces
`tf.nn.sparse_softmax_cross_entropy_with_logits` (see the metrics module doc).
This times, interleaved in one process, each with the kernel and with the
plain ops, on random windows of the `small` model:
  xent_train  the loss and its gradient alone, logits [batch x 20, 4004];
  xent_eval   the loss alone, logits [eval batch x 20, 4004];
  step        one training step of the model (forward, loss, gradients);
  eval        one evaluation batch (forward and `metrics.token_sums`).
It checks that the two give the same gradients, to the bit, and losses
within float32 rounding, then prints one line per case:
`case=<name> kernel_s=<median> plain_s=<median> ratio=<plain/kernel>`.
"""

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import hardware
from gpfl_tff.models import language_model
from gpfl_tff.models import metrics

REPS = flags.DEFINE_integer('reps', 21, 'Timed repetitions of each case.')
BATCH = flags.DEFINE_integer('batch_size', 16, 'Training batch (windows).')
EVAL_BATCH = flags.DEFINE_integer('eval_batch_size', 128,
                                  'Evaluation batch (windows).')


def _cases(model, num_tokens, seq_len):
  """name -> (loss_fn -> a function returning (exact, close) results)."""
  rng = np.random.default_rng(0)
  def windows(batch):
    return tf.constant(rng.integers(4, num_tokens, size=(batch, seq_len)),
                       tf.int32)
  train_x, eval_x = windows(BATCH.value), windows(EVAL_BATCH.value)
  train_y, eval_y = tf.reshape(train_x, [-1]), tf.reshape(eval_x, [-1])
  train_logits = tf.random.normal([train_y.shape[0], num_tokens], seed=1)
  eval_logits = tf.random.normal([eval_y.shape[0], num_tokens], seed=2)

  def xent_train(loss_fn):
    @tf.function
    def run():
      with tf.GradientTape() as tape:
        tape.watch(train_logits)
        loss = tf.reduce_mean(loss_fn(train_y, train_logits))
      return [tape.gradient(loss, train_logits)], [loss]
    return run

  def xent_eval(loss_fn):
    return tf.function(lambda: ([], [loss_fn(eval_y, eval_logits)]))

  def step(loss_fn):
    @tf.function
    def run():
      with tf.GradientTape() as tape:
        logits = model(train_x, training=True)
        mask = metrics.token_mask(train_x)
        loss = (tf.reduce_sum(loss_fn(train_x, logits) * mask)
                / tf.reduce_sum(mask))
      grads = tape.gradient(loss, model.trainable_variables)
      return [tf.convert_to_tensor(g) for g in grads], [loss]
    return run

  def evaluate(loss_fn):
    return tf.function(lambda: ([], list(metrics.token_sums(
        eval_x, model(eval_x, training=False), loss_fn).values())))

  return {'xent_train': xent_train, 'xent_eval': xent_eval, 'step': step,
          'eval': evaluate}


def main(argv):
  del argv
  preset = language_model.PRESETS['small']
  num_tokens = preset.vocab_size + 4
  model = language_model.build_keras_model(preset, num_tokens)
  for name, build in _cases(model, num_tokens, preset.seq_len).items():
    kernel = build(metrics.kernel_cross_entropy)
    plain = build(metrics.cross_entropy)
    (kernel_exact, kernel_close), (plain_exact, plain_close) = (kernel(),
                                                                plain())
    for a, b in zip(kernel_exact, plain_exact):
      if not bool(tf.reduce_all(tf.equal(a, b))):
        raise AssertionError(f'{name}: the gradients differ')
    for a, b in zip(kernel_close, plain_close):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=3e-7)
    times = {'kernel': [], 'plain': []}
    for _ in range(REPS.value):  # Interleaved.
      times['kernel'].append(hardware.median_seconds(kernel, 3))
      times['plain'].append(hardware.median_seconds(plain, 3))
    kernel_s, plain_s = (float(np.median(times[k])) for k in times)
    spread = ' '.join(f'{k}_min_max={min(v):.5f}-{max(v):.5f}'
                      for k, v in times.items())
    print(f'case={name} kernel_s={kernel_s:.5f} plain_s={plain_s:.5f} '
          f'ratio={plain_s / kernel_s:.3f} {spread}', flush=True)


if __name__ == '__main__':
  app.run(main)
