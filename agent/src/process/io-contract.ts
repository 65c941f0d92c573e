// The stdio contract the container code is written against is the io domain's own.
export type { ProcessIO } from '../io/process-io.js';
import type { ProcessIO, ProcessIOOptions } from '../io/process-io.js';

export type CreateProcessIO = (opts: ProcessIOOptions) => ProcessIO;
