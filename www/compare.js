// The Compare table: every method at one ratio, with the best highlighted.
// Its numbers come from each method's summary. The page only compares them:
// the budget check, the lowest error and ADAMIX's reduction in percent.

import { formatBytes, formatError, formatFraction, formatSeconds } from './format.js';
import { METHOD_LABELS, METHODS } from './methods.js';

// A file counts as within budget up to this factor over the target size, the
// same 2% slack as the budget column of the CLI's compare command.
export const BUDGET_SLACK = 1.02;

function cell(text, className = null) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) {
    td.className = className;
  }
  return td;
}

export function isWithinBudget(summary) {
  return summary.compressed_bytes <= BUDGET_SLACK * summary.ratio_target * summary.f16_delta_bytes;
}

// The finished method with the lowest overall relative error, or null.
export function bestMethod(results) {
  let best = null;
  for (const [method, { summary }] of results) {
    if (best === null || summary.rel_error_total < results.get(best).summary.rel_error_total) {
      best = method;
    }
  }
  return best;
}

// Returns {baseline, reduction}: the baseline with the lowest error and how
// much lower ADAMIX's error is, as a fraction of that baseline's error
// (negative when ADAMIX's error is higher). Null until ADAMIX and at least
// one baseline have finished.
export function adamixReduction(results) {
  if (!results.has('adamix')) {
    return null;
  }
  let baseline = null;
  for (const [method, { summary }] of results) {
    if (method !== 'adamix' && (baseline === null || summary.rel_error_total < results.get(baseline).summary.rel_error_total)) {
      baseline = method;
    }
  }
  if (baseline === null) {
    return null;
  }
  const adamixError = results.get('adamix').summary.rel_error_total;
  const baselineError = results.get(baseline).summary.rel_error_total;
  return { baseline, reduction: (baselineError - adamixError) / baselineError };
}

// Fills the Compare section from `comparison` = {ratio, results, running},
// where results maps a method to {summary, rows} and running is the method
// being compressed now, or null.
export function renderComparison(section, comparison) {
  const { ratio, results, running } = comparison;
  section.querySelector('#compare-ratio').textContent = formatFraction(ratio);
  const body = section.querySelector('#compare-table tbody');
  body.replaceChildren();
  const best = results.size > 1 ? bestMethod(results) : null;

  for (const method of METHODS) {
    const tr = document.createElement('tr');
    tr.dataset.method = method;
    const name = cell(METHOD_LABELS[method] ?? method, 'method');
    tr.append(name);
    const result = results.get(method);
    if (!result) {
      const waiting = cell(method === running ? 'compressing…' : 'waiting', 'pending');
      waiting.colSpan = 5;
      tr.append(waiting);
      tr.classList.add('pending');
      body.append(tr);
      continue;
    }

    const { summary } = result;
    const withinBudget = isWithinBudget(summary);
    tr.dataset.relError = String(summary.rel_error_total);
    tr.dataset.bytes = String(summary.compressed_bytes);
    tr.dataset.withinBudget = String(withinBudget);
    tr.append(
      cell(formatBytes(summary.compressed_bytes), 'number'),
      cell(formatFraction(summary.ratio_achieved), 'number'),
      cell(withinBudget ? 'yes' : 'no, over budget', withinBudget ? 'ok' : 'over'),
      cell(formatError(summary.rel_error_total), 'number error-value'),
      cell(formatSeconds(summary.seconds), 'number'),
    );
    if (method === best) {
      tr.classList.add('best');
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'lowest error';
      name.append(' ', badge);
    }
    body.append(tr);
  }

  section.querySelector('#compare-note').textContent = comparisonSentence(results);
  section.hidden = false;
}

function comparisonSentence(results) {
  const outcome = adamixReduction(results);
  if (!outcome || results.size < METHODS.length) {
    return '';
  }
  const { baseline, reduction } = outcome;
  const adamixError = formatError(results.get('adamix').summary.rel_error_total);
  const baselineError = formatError(results.get(baseline).summary.rel_error_total);
  const percent = `${(Math.abs(reduction) * 100).toFixed(1)}%`;
  const direction = reduction >= 0 ? 'lower' : 'higher';
  return `ADAMIX's overall relative error (${adamixError}) is ${percent} ${direction} than that of the best baseline, ` +
    `${METHOD_LABELS[baseline]} (${baselineError}), at the same size target.`;
}
