r"""Would fine-tuning many clients in one step be faster? A measurement.

  .venv/bin/python -m benchmarks.stacked_clients --clients=1,4,8,16

The local stage fine-tunes one client at a time: a Keras training step at
batch 16 (`--batch_size`) per client. The alternative weighed for the speed
issue is to stack C clients' weights and take one step for all of them: each
client keeps its own weights (so its gradient is its own), and every product
becomes one batched product over the client axis.

For each C this prints the median seconds of
  keras    C single-client Keras training steps (the present cost), and
  stacked  one step of the stacked model over C clients,
timed interleaved in this process, with their ratio (stacked / keras: below
1 means stacking pays) and the GFLOP/s both reach (`hardware` counting).
Before timing it checks that the stacked step gives each client the gradient
its own Keras step gives (relative error printed): the two do the same math.

The stacked model is written here, not in the library: it exists to answer
the question. On this project's 2-core machine (docs/RESULTS.md, "Speed")
stacking 16 clients saved 9 % of a step, and fewer clients less: too little
to build it into the local stage.
"""

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import hardware
from gpfl_tff.models import language_model
from gpfl_tff.models import metrics

MODEL = flags.DEFINE_enum('model', 'small', list(language_model.PRESETS),
                          'Model size preset.')
CLIENTS = flags.DEFINE_list('clients', ['1', '4', '8', '16'],
                            'Numbers of stacked clients to time.')
BATCH = flags.DEFINE_integer('batch_size', 16, 'Sequences per client batch.')
REPS = flags.DEFINE_integer('reps', 20, 'Timed repetitions of each.')


def stacked_loss(weights, x, y):
  """Sum over clients of each client's mean masked cross-entropy.

  weights: the Keras model's trainable variables, each with a leading client
  axis (embedding, LSTM kernel, recurrent kernel, bias, two dense kernels and
  biases); x, y: int32 [clients, batch, time].
  """
  emb, kernel, recurrent, bias, proj, proj_b, out, out_b = weights
  inputs = tf.gather(emb, x, batch_dims=1)  # [C, B, T, E]
  gates_in = tf.einsum('cbte,ceg->cbtg', inputs, kernel) + bias[:, None, None]
  units = recurrent.shape[1]
  h = tf.zeros(tf.concat([tf.shape(x)[:2], [units]], 0))
  c = tf.zeros_like(h)
  outputs = []
  for t in range(x.shape[2]):  # Keras's gate order: input, forget, cell, out.
    z = gates_in[:, :, t] + tf.matmul(h, recurrent)
    i, f, g, o = tf.split(z, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    outputs.append(h)
  hidden = tf.stack(outputs, axis=2)
  projected = tf.einsum('cbth,chp->cbtp', hidden, proj) + proj_b[:, None, None]
  logits = tf.einsum('cbtp,cpv->cbtv', projected, out) + out_b[:, None, None]
  mask = metrics.token_mask(y)
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                          logits=logits)
  per_client = (tf.reduce_sum(losses * mask, axis=[1, 2])
                / tf.maximum(tf.reduce_sum(mask, axis=[1, 2]), 1.0))
  return tf.reduce_sum(per_client)


def main(argv):
  del argv
  preset = language_model.PRESETS[MODEL.value]
  num_tokens = preset.vocab_size + 4
  model = language_model.build_keras_model(preset, num_tokens)
  loss_fn = metrics.MaskedCrossEntropy()
  forward = hardware.preset_forward_flops(preset, num_tokens)
  rng = np.random.default_rng(0)

  @tf.function
  def keras_grads(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True))
    return [tf.convert_to_tensor(g)
            for g in tape.gradient(loss, model.trainable_variables)]

  print(f'model={MODEL.value} batch_size={BATCH.value}')
  for num_clients in (int(c) for c in CLIENTS.value):
    shape = (num_clients, BATCH.value, preset.seq_len)
    x = tf.constant(rng.integers(4, num_tokens, size=shape), tf.int32)
    y = tf.constant(rng.integers(0, num_tokens, size=shape), tf.int32)
    weights = [tf.Variable(tf.stack([v] * num_clients))
               for v in model.trainable_variables]

    @tf.function
    def stacked_grads(x, y, weights=weights):
      with tf.GradientTape() as tape:
        loss = stacked_loss(weights, x, y)
      return [tf.convert_to_tensor(g) for g in tape.gradient(loss, weights)]

    def keras_steps(x=x, y=y, n=num_clients):
      return [keras_grads(x[c], y[c]) for c in range(n)]

    stacked = stacked_grads(x, y)
    worst = 0.0
    for c, grads in enumerate(keras_steps()):
      for g, s in zip(grads, stacked):
        worst = max(worst, float(tf.norm(g - s[c]) / tf.norm(g)))
    keras_s, stacked_s = [], []
    for _ in range(3):  # Interleaved thirds, so that load hits both alike.
      keras_s.append(hardware.median_seconds(keras_steps,
                                             REPS.value // 3 + 1))
      stacked_s.append(hardware.median_seconds(lambda: stacked_grads(x, y),
                                               REPS.value // 3 + 1))
    keras_t, stacked_t = float(np.median(keras_s)), float(np.median(stacked_s))
    flops = hardware.stage_flops(forward, int(np.prod(shape)), 0)
    print(f'clients={num_clients} keras_s={keras_t:.4f} '
          f'stacked_s={stacked_t:.4f} ratio={stacked_t / keras_t:.3f} '
          f'keras_gflops={flops / keras_t / 1e9:.1f} '
          f'stacked_gflops={flops / stacked_t / 1e9:.1f} '
          f'max_relative_gradient_error={worst:.1e}', flush=True)


if __name__ == '__main__':
  app.run(main)
