"""The method's TFF computations as serialized files, for another TFF runtime.

`export(computations(model_fn, training_config), output_dir)` writes, for each
computation of `COMPUTATIONS`, `<name>.pb` (a `tff` Computation proto, from
`tff.framework.serialize_computation`) and a `manifest.json` with its type
signature and the federated intrinsics it uses. `load(output_dir, name)`
reads one back as a callable `tff.Computation`.

  initialize        the learning process's first state (global and group
                    stages start from it)
  round             one round of the global or of a group stage
                    (`LearningProcess.next`: the group stage is the same
                    computation over one group's clients)
  personalize       the local stage: fine-tune each client from the broadcast
                    weights, keep the best validation epoch, score its test
                    data (`local.build_local_stage().run`)
  evaluate          evaluation of broadcast weights on each client's data

The intrinsics are what a production runtime must implement: broadcast,
map, sum-style aggregation, and the zips and server-side values that glue
them (`federated_zip_*`, `federated_value_at_server`, `federated_apply`,
`federated_eval_at_server`).
"""

import json
import os

import tensorflow_federated as tff
from tensorflow_federated.proto.v0 import computation_pb2

from gpfl_tff.learning import local
from gpfl_tff.learning import training

COMPUTATIONS = ('initialize', 'round', 'personalize', 'evaluate')
MANIFEST = 'manifest.json'


def computations(model_fn, training_config: training.TrainingConfig
                 ) -> dict[str, tff.Computation]:
  """name -> the in-process computation, for `COMPUTATIONS`."""
  process = training.build_process(model_fn, training_config)
  stage = local.build_local_stage(model_fn)
  return {'initialize': process.initialize, 'round': process.next,
          'personalize': stage.run, 'evaluate': stage.evaluate_clients}


def intrinsics(computation: tff.Computation) -> list[str]:
  """Sorted URIs of the federated intrinsics `computation` calls."""
  block = tff.framework.ComputationBuildingBlock.from_proto(
      tff.framework.serialize_computation(computation))
  found = set()

  def visit(node):
    if isinstance(node, tff.framework.Intrinsic):
      found.add(node.uri)
    return node, False

  tff.framework.transform_postorder(block, visit)
  return sorted(found)


def export(named: dict[str, tff.Computation], output_dir: str) -> dict:
  """Writes each computation of `named` and the manifest; returns it."""
  os.makedirs(output_dir, exist_ok=True)
  manifest = {}
  for name, computation in named.items():
    proto = tff.framework.serialize_computation(computation)
    path = os.path.join(output_dir, f'{name}.pb')
    with open(path + '.tmp', 'wb') as f:
      f.write(proto.SerializeToString())
    os.replace(path + '.tmp', path)
    manifest[name] = {'file': f'{name}.pb',
                      'type_signature': str(computation.type_signature),
                      'intrinsics': intrinsics(computation)}
  with open(os.path.join(output_dir, MANIFEST), 'w', encoding='utf-8') as f:
    json.dump(manifest, f, indent=2)
    f.write('\n')
  return manifest


def load(output_dir: str, name: str) -> tff.Computation:
  """The computation `name` of an export, callable in a TFF context.

  Raises ValueError if the file is missing or is not a serialized
  computation.
  """
  path = os.path.join(output_dir, f'{name}.pb')
  proto = computation_pb2.Computation()
  try:
    with open(path, 'rb') as f:
      proto.ParseFromString(f.read())
    return tff.framework.deserialize_computation(proto)
  except OSError as e:
    raise ValueError(f'{path}: cannot read ({e.strerror})') from None
  except Exception as e:  # pylint: disable=broad-except
    # A corrupt file fails in protobuf or in TFF's deserialization.
    raise ValueError(f'{path}: not a serialized TFF computation '
                     f'({type(e).__name__})') from None
