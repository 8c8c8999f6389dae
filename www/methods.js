// The compression methods the core offers, in the order the page lists them.

export const METHODS = ['adamix', 'delta-come', 'low-rank', 'bitdelta'];

export const METHOD_LABELS = {
  adamix: 'ADAMIX',
  'delta-come': 'Delta-CoMe',
  'low-rank': 'Low-rank',
  bitdelta: 'BitDelta',
};
