"""Which engine a labelling run's workers load, settled in the driver before the pipeline is
built, and recorded in the directory's identity:

- a named --engine: that one, at its precision;
- --engine auto on --resume: the engine and precision the directory records (what its rows
  were made with), unless --precision asks otherwise;
- --engine auto on a local runner: the winner of the timed probe, run here, where the
  workers run;
- --engine auto on a remote runner: still auto, at --precision (default fp32): each worker
  times the engines of that precision at its start, and the run's manifest counts the images
  each engine labelled.
"""

from transforms.engines import EngineUnavailable, engine_named
from transforms.engines.choice import AUTO, choose_engine
from transforms.engines.source import ModelSource


class EngineSettingError(Exception):
  """No engine of the precision asked for can run here."""


def settle_engine(args, local, spec, recorded_identity):
  """Sets args.engine and args.precision to what the workers will run; returns the
  EngineChoice where this process timed the engines, else None."""
  if args.engine != AUTO:
    args.precision = engine_named(args.engine).precision
    return _runs_here(args, local)
  recorded = recorded_identity or {}
  if args.resume and recorded.get('engine') and args.precision in (None,
                                                                  recorded.get('precision')):
    args.engine, args.precision = recorded['engine'], recorded.get('precision')
    return _runs_here(args, local, recorded=True)
  if not local:
    args.precision = remote_precision(args)
    return None
  try:
    running = choose_engine(ModelSource(spec, args.model_handle, args.feature_handle),
                            args.precision, args.batch_size)
  except EngineUnavailable as e:
    raise EngineSettingError(f'--precision {args.precision}: {e}') from e
  args.engine, args.precision = running.name, running.precision
  return running.choice


def _runs_here(args, local, recorded=False):
  """None, where args.engine can run on this machine (or is not run here)."""
  if not local or args.engine == AUTO:
    return None
  try:
    missing = engine_named(args.engine).missing()
  except ValueError as e:  # a directory labelled by an engine this version does not have
    missing = str(e)
  if not missing:
    return None
  if recorded:
    raise EngineSettingError(
        f'{args.output} was labelled with {args.engine}, which cannot run here: {missing}. '
        'Resume it on a machine that can, or label into another directory')
  raise EngineSettingError(f'--engine {args.engine} cannot run here: {missing}')


def remote_precision(args):
  """The precision of a run whose workers choose their engine themselves."""
  if args.engine != AUTO:
    return engine_named(args.engine).precision
  return args.precision or 'fp32'
