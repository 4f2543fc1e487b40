"""What broke, in a line: the step and the exception that ended a failed run, found in the
tracebacks Beam gathers from every worker (often hundreds of lines, the cause buried)."""

import re
import traceback

# An unindented 'module.Type: message' line of a traceback.
_EXCEPTION_LINE = re.compile(r'^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Fault))'
                             r'(?::\s?(.*))?$')
_STEP = re.compile(r" ?\[while running '([^']+)'\]")
# Exceptions that only carry another's traceback as their message.
_WRAPPERS = ('Error processing instruction', 'Traceback (most recent call last)')


def _exception_lines(text):
  seen = []
  for line in text.splitlines():
    match = _EXCEPTION_LINE.match(line)
    if not match:
      continue
    kind, message = match.group(1), _STEP.sub('', match.group(2) or '').strip()
    if any(message.startswith(wrapper) for wrapper in _WRAPPERS) or not message and \
        kind == 'RuntimeError':
      continue
    entry = f'{kind}: {message}' if message else kind
    if entry not in seen:
      seen.append(entry)
  return seen


def describe(failure):
  """(the step that failed or None, [the distinct exceptions, innermost cause first])."""
  text = ''.join(traceback.format_exception(failure))
  steps = _STEP.findall(text)
  causes = _exception_lines(text) or [f'{type(failure).__name__}: {failure}']
  return (steps[0] if steps else None), causes


def summary_lines(failure, max_causes=2):
  """Lines ending with the root cause, at most 1 + max_causes of them."""
  step, causes = describe(failure)
  where = f"step '{step}'" if step else 'the pipeline'
  shown = causes[:max_causes][::-1]  # the root cause last, where the eye lands
  return [f'label-images: the run failed in {where}:'] + [f'  {cause}' for cause in shown]
