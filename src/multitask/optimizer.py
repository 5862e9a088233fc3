"""Adam as one fused kernel per weight: the same update as Keras' Adam in one pass over memory.

Keras 3's Adam updates a weight with about ten element-wise operations, each a pass over the
weight, its two moments and temporaries. On a CPU that is memory-bound: for the starting
point's model (6.3 M weights, most in two dense layers) it took about a quarter of a training
step at batch 32 (docs/benchmarks.md, P0). TensorFlow's `ResourceApplyAdam` computes the same
formula (m, v, then var -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)) in one kernel.
AMSGrad and backends other than TensorFlow take Keras' own update; weight decay, clipping and
the rest of `keras.optimizers.Adam` work as they do there (they happen outside `update_step`).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="multitask")
class FusedAdam(keras.optimizers.Adam):
    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype), use_locking=False)


def _handle(variable) -> tf.Tensor:
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle
