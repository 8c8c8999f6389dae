//! The browser binding: the core's functions for the page's Web Worker.
//!
//! Files arrive as `File` objects and are read by byte range with
//! `FileReaderSync`, which only a worker may use, so the page's main thread
//! never blocks and no file is read whole. Events and results go back as
//! plain JS objects; errors become a JS `Error` whose message is the core's
//! user-facing sentence. This is the one place where core errors are
//! converted for JS.

use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{Blob, File, FileReaderSync};

use crate::checkpoint::{read_header, ByteSource, Checkpoint};
use crate::compress::{compress_tensor, finish_run, CompressOptions, CompressOutcome, Event, RunPlan, TensorOutput};
use crate::gpu::{select_context, Device, GpuContext};
use crate::container::{DataSink, DeltaFile};
use crate::error::{Error, Result};
use crate::explore::{Explorer as CoreExplorer, Share};
use crate::methods::Method;

/// Installs the panic hook so that a panic shows its message in the console.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// A browser `Blob` read by byte range.
struct BlobSource {
    name: String,
    blob: Blob,
    reader: FileReaderSync,
}

impl BlobSource {
    fn new(file: File) -> Result<Self> {
        let name = file.name();
        let reader = FileReaderSync::new().map_err(|_| Error::file(&name, "this browser cannot read files synchronously in a worker"))?;
        Ok(BlobSource { name, blob: file.into(), reader })
    }
}

impl ByteSource for BlobSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn len(&self) -> u64 {
        self.blob.size() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset + len as u64;
        if end > self.len() {
            return Err(Error::file(&self.name, format!("read of {len} bytes at offset {offset} is past the end of the file ({} bytes); the file is truncated", self.len())));
        }
        let read_failed = |what: &str| Error::file(&self.name, format!("the browser could not read the file ({what}); choose it again"));
        let slice = self.blob.slice_with_f64_and_f64(offset as f64, end as f64).map_err(|_| read_failed("slice"))?;
        let buffer = self.reader.read_as_array_buffer(&slice).map_err(|_| read_failed("read"))?;
        Ok(Uint8Array::new(&buffer).to_vec())
    }
}

/// Sends data chunks to the page as `{kind: 'chunk', bytes}` events.
struct ChunkSink<'a> {
    on_event: &'a Function,
}

impl DataSink for ChunkSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let event = Object::new();
        set(&event, "kind", &"chunk".into());
        set(&event, "bytes", &Uint8Array::from(bytes).into());
        self.on_event.call1(&JsValue::NULL, &event).map(|_| ()).map_err(|e| Error::InvalidOptions(format!("the page rejected a chunk: {e:?}")))
    }
}

fn set(object: &Object, key: &str, value: &JsValue) {
    Reflect::set(object, &key.into(), value).expect("setting a property on a plain object succeeds");
}

fn to_js(value: &impl serde::Serialize) -> JsValue {
    let text = serde_json::to_string(value).expect("report types serialize");
    js_sys::JSON::parse(&text).expect("serde_json writes valid JSON")
}

fn to_js_error(error: Error) -> JsValue {
    js_sys::Error::new(&error.to_string()).into()
}

fn open_checkpoint(files: &Array) -> Result<Checkpoint> {
    let mut sources: Vec<Box<dyn ByteSource>> = Vec::new();
    for value in files.iter() {
        let file: File = value.dyn_into().map_err(|_| Error::InvalidOptions("expected File objects".into()))?;
        sources.push(Box::new(BlobSource::new(file)?));
    }
    Checkpoint::open(sources)
}

fn emit(on_event: &Function, kind: &str, fields: &[(&str, JsValue)]) {
    let event = Object::new();
    set(&event, "kind", &kind.into());
    for (key, value) in fields {
        set(&event, key, value);
    }
    if let Err(error) = on_event.call1(&JsValue::NULL, &event) {
        log::warn!("the page's event handler threw: {error:?}");
    }
}

/// Forwards core events to the page's handler as plain objects.
fn forward(on_event: &Function) -> impl FnMut(Event) + '_ {
    move |event| match event {
        Event::Plan(pairing, tensors) => emit(on_event, "plan", &[("pairing", to_js(pairing)), ("tensors", (tensors as f64).into())]),
        Event::Progress { tensor, stage, index, total } => emit(on_event, "progress", &[
            ("tensor", tensor.into()), ("stage", stage.into()), ("index", (index as f64).into()), ("total", (total as f64).into())]),
        Event::Tensor(row) => emit(on_event, "tensor", &[("row", to_js(row))]),
    }
}

/// `{header, summary, rows}` as a JS object.
fn outcome_to_js(outcome: &CompressOutcome) -> JsValue {
    let result = Object::new();
    set(&result, "header", &Uint8Array::from(outcome.header.as_slice()).into());
    set(&result, "summary", &to_js(&outcome.summary));
    set(&result, "rows", &to_js(&outcome.rows));
    result.into()
}

/// Reads `{ratio, method?, device?, store_mismatched?}`.
fn parse_options(options: &JsValue) -> Result<CompressOptions> {
    let get = |key: &str| Reflect::get(options, &key.into()).ok();
    let ratio = get("ratio").and_then(|v| v.as_f64()).unwrap_or(1.0 / 16.0);
    let store_mismatched = get("store_mismatched").and_then(|v| v.as_bool()).unwrap_or(false);
    let method = match get("method").and_then(|v| v.as_string()) {
        Some(name) => Method::parse(&name).ok_or_else(|| Error::InvalidOptions(format!("unknown method '{name}'; use adamix, delta-come, low-rank or bitdelta")))?,
        None => Method::Adamix,
    };
    let device = match get("device").and_then(|v| v.as_string()) {
        Some(name) => Device::parse(&name).ok_or_else(|| Error::InvalidOptions(format!("unknown device '{name}'; use auto, gpu or cpu")))?,
        None => Device::Auto,
    };
    Ok(CompressOptions { ratio, store_mismatched, method, device, ..Default::default() })
}

/// State a session keeps between the page's requests.
struct SessionState {
    base: Checkpoint,
    finetuned: Checkpoint,
    options: CompressOptions,
    run: RunPlan,
    gpu: Option<GpuContext>,
}

/// One compression run as seen by one worker of the page's pool.
///
/// Every worker opens a session on the same files and options and compresses
/// the tensors the page hands it. One of them then joins the outputs of all
/// into the file head and the report. The output equals that of a single
/// synchronous run, byte for byte.
#[wasm_bindgen]
pub struct Session {
    state: Rc<SessionState>,
}

#[wasm_bindgen]
impl Session {
    /// Opens both checkpoints, plans the run and, unless `options.device` is `cpu`, a WebGPU context.
    ///
    /// `options` is `{ratio, method?, device?, store_mismatched?}`.
    pub async fn open(base_files: Array, finetuned_files: Array, options: JsValue) -> std::result::Result<Session, JsValue> {
        let options = parse_options(&options).map_err(to_js_error)?;
        let base = open_checkpoint(&base_files).map_err(to_js_error)?;
        let finetuned = open_checkpoint(&finetuned_files).map_err(to_js_error)?;
        let run = RunPlan::new(&base, &finetuned, &options).map_err(to_js_error)?;
        let gpu = if options.method == Method::Adamix { select_context(options.device).await.map_err(to_js_error)? } else { None };
        Ok(Session { state: Rc::new(SessionState { base, finetuned, options, run, gpu }) })
    }

    /// `{pairing, device, tensors: [{name, matrix_elements}]}`: the plan, before any tensor is read.
    pub fn plan(&self) -> JsValue {
        let run = &self.state.run;
        let tensors: Vec<_> = (0..run.len()).map(|i| serde_json::json!({ "name": run.name(i), "matrix_elements": run.matrix_elements(i) })).collect();
        to_js(&serde_json::json!({ "pairing": run.pairing(), "device": self.device(), "tensors": tensors }))
    }

    /// Compresses tensor `index`, sending its `progress` and `chunk` events to `on_event`.
    ///
    /// Resolves to `{output, row}`: `output` is the JSON text that
    /// [`Session::finish`] takes, `row` the tensor's report row.
    pub fn compress_tensor(&self, index: usize, on_event: Function) -> Promise {
        let state = Rc::clone(&self.state);
        future_to_promise(async move {
            let run = &state.run;
            if index >= run.len() {
                return Err(to_js_error(Error::InvalidOptions(format!("tensor index {index} is out of range; the run has {} tensors", run.len()))));
            }
            let (name, total) = (run.name(index).to_string(), run.len());
            let mut stage = |stage: &str| emit(&on_event, "progress", &[
                ("tensor", name.as_str().into()), ("stage", stage.into()), ("index", (index as f64).into()), ("total", (total as f64).into())]);
            let mut sink = ChunkSink { on_event: &on_event };
            let output = compress_tensor(&state.base, &state.finetuned, &state.options, run, index, state.gpu.as_ref(), None, &mut sink, &mut stage)
                .await.map_err(to_js_error)?;
            let result = Object::new();
            set(&result, "output", &serde_json::to_string(&output).expect("outputs serialize").into());
            set(&result, "row", &to_js(&output.row));
            Ok(result.into())
        })
    }

    /// Joins the outputs of every tensor (JSON texts from [`Session::compress_tensor`], in tensor order).
    ///
    /// Returns `{header: Uint8Array, summary, rows}`; the file is `header`
    /// followed by the chunks of tensor 0, then those of tensor 1, and so on.
    pub fn finish(&self, outputs: Array, seconds: f64) -> std::result::Result<JsValue, JsValue> {
        let parsed = parse_outputs(&outputs).map_err(to_js_error)?;
        let state = &self.state;
        let outcome = finish_run(&state.finetuned, &state.options, &state.run, parsed, self.device(), seconds).map_err(to_js_error)?;
        Ok(outcome_to_js(&outcome))
    }

    fn device(&self) -> String {
        self.state.gpu.as_ref().map_or_else(|| "cpu".to_string(), GpuContext::adapter_label)
    }
}

/// Parses tensor outputs sent back as JSON texts.
fn parse_outputs(outputs: &Array) -> Result<Vec<TensorOutput>> {
    let mut parsed = Vec::with_capacity(outputs.length() as usize);
    for (index, value) in outputs.iter().enumerate() {
        let text = value.as_string().ok_or_else(|| Error::InvalidOptions(format!("output {index} is not a string")))?;
        let output: TensorOutput = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidOptions(format!("output {index} is not a tensor output: {e}")))?;
        parsed.push(output);
    }
    Ok(parsed)
}

/// `[{index, output}]`: each tensor index with its output as a JSON text.
fn outputs_to_js(outputs: &[(usize, TensorOutput)]) -> JsValue {
    let list = Array::new();
    for (index, output) in outputs {
        let item = Object::new();
        set(&item, "index", &(*index as f64).into());
        set(&item, "output", &serde_json::to_string(output).expect("outputs serialize").into());
        list.push(&item);
    }
    list.into()
}

/// Discards data, for solves whose file is not wanted.
struct DiscardSink;

impl DataSink for DiscardSink {
    fn write(&mut self, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// One share of the budget explorer: analyses its tensors of the pair once,
/// then re-solves them at any reachable ratio.
///
/// The page opens one share per worker on the same files with the same
/// `parts`, requests a solve from each, then has one join all outputs with
/// [`Explorer::finish`]. With `parts` 1 one explorer owns every tensor.
#[wasm_bindgen]
pub struct Explorer {
    inner: CoreExplorer,
}

#[wasm_bindgen]
impl Explorer {
    /// Reads both checkpoints and computes the delta, SVD and cost table of every matrix of share `part` of `parts`.
    #[wasm_bindgen(constructor)]
    pub fn new(base_files: Array, finetuned_files: Array, part: usize, parts: usize, on_event: Function) -> std::result::Result<Explorer, JsValue> {
        let base = open_checkpoint(&base_files).map_err(to_js_error)?;
        let finetuned = open_checkpoint(&finetuned_files).map_err(to_js_error)?;
        let inner = CoreExplorer::build_share(base, finetuned, Share { part, parts }, &mut forward(&on_event)).map_err(to_js_error)?;
        Ok(Explorer { inner })
    }

    /// `{min_ratio, max_ratio, min_bytes, max_bytes, f16_delta_bytes}`.
    pub fn reachable(&self) -> JsValue {
        to_js(self.inner.reachable())
    }

    /// Solves this share's tensors at `ratio` from the cache, without their data.
    ///
    /// Returns `[{index, output}]` for [`Explorer::finish`].
    pub fn solve_share(&self, ratio: f64) -> std::result::Result<JsValue, JsValue> {
        let outputs = self.inner.solve_share(ratio, &mut |_| {}, &mut DiscardSink).map_err(to_js_error)?;
        Ok(outputs_to_js(&outputs))
    }

    /// Solves this share's tensors at `ratio` and sends their data as chunk events.
    ///
    /// Each tensor's chunks follow a `progress` event that names its index.
    /// Returns `[{index, output}]` for [`Explorer::finish`].
    pub fn write_share(&self, ratio: f64, on_event: Function) -> std::result::Result<JsValue, JsValue> {
        let mut sink = ChunkSink { on_event: &on_event };
        let outputs = self.inner.solve_share(ratio, &mut forward(&on_event), &mut sink).map_err(to_js_error)?;
        Ok(outputs_to_js(&outputs))
    }

    /// Joins the outputs of every share at `ratio` (JSON texts, in tensor order).
    ///
    /// Returns `{header: Uint8Array, summary, rows}`.
    pub fn finish(&self, ratio: f64, outputs: Array, seconds: f64) -> std::result::Result<JsValue, JsValue> {
        let parsed = parse_outputs(&outputs).map_err(to_js_error)?;
        let outcome = self.inner.finish(ratio, parsed, seconds).map_err(to_js_error)?;
        Ok(outcome_to_js(&outcome))
    }
}

fn open_delta(file: File) -> Result<DeltaFile> {
    DeltaFile::open(Box::new(BlobSource::new(file)?))
}

/// Writes `W_base + Δ̂` as a safetensors file through chunk events (header first).
#[wasm_bindgen]
pub fn apply_files(base_files: Array, delta_file: File, on_event: Function) -> std::result::Result<(), JsValue> {
    let base = open_checkpoint(&base_files).map_err(to_js_error)?;
    let delta = open_delta(delta_file).map_err(to_js_error)?;
    let mut sink = ChunkSink { on_event: &on_event };
    crate::apply::apply(&base, &delta, &mut sink, &mut |tensor, index, total| emit(&on_event, "progress", &[
        ("tensor", tensor.into()), ("stage", "apply".into()), ("index", (index as f64).into()), ("total", (total as f64).into())]))
        .map_err(to_js_error)
}

/// Exports a PEFT LoRA adapter from a compressed delta: `{adapter: Uint8Array, config: string, skipped: [string]}`.
#[wasm_bindgen]
pub fn export_peft(delta_file: File) -> std::result::Result<JsValue, JsValue> {
    let delta = open_delta(delta_file).map_err(to_js_error)?;
    let adapter = crate::export::export_peft(&delta).map_err(to_js_error)?;
    let result = Object::new();
    set(&result, "adapter", &Uint8Array::from(adapter.model.as_slice()).into());
    set(&result, "config", &adapter.config.into());
    set(&result, "skipped", &to_js(&adapter.skipped));
    Ok(result.into())
}

/// Lists the tensors and metadata of one safetensors file.
#[wasm_bindgen]
pub fn inspect_file(file: File) -> std::result::Result<JsValue, JsValue> {
    let source = BlobSource::new(file).map_err(to_js_error)?;
    let header = read_header(&source).map_err(to_js_error)?;
    let tensors: Vec<_> = header.tensors.iter().map(|t| serde_json::json!({ "name": t.name, "dtype": t.dtype.name(), "shape": t.shape })).collect();
    Ok(to_js(&serde_json::json!({ "tensors": tensors, "metadata": header.metadata })))
}

/// Times each GPU kernel against its CPU reference on a synthetic `[m, n]`
/// delta's leading `candidates` triplets (see `gpu::profile`). The GPU part
/// runs when `use_gpu` is set and the browser offers a WebGPU adapter.
///
/// Resolves to `{device, kernels: [...]}`.
#[wasm_bindgen]
pub async fn profile_kernels(m: usize, n: usize, candidates: usize, repeats: usize, use_gpu: bool) -> std::result::Result<JsValue, JsValue> {
    let device = if use_gpu { Device::Gpu } else { Device::Cpu };
    let gpu = select_context(device).await.map_err(to_js_error)?;
    let kernels = crate::gpu::profile::profile_kernels(gpu.as_ref(), m, n, candidates, repeats).await
        .map_err(|e| to_js_error(Error::InvalidOptions(e.to_string())))?;
    let label = gpu.as_ref().map_or_else(|| "cpu".to_string(), GpuContext::adapter_label);
    Ok(to_js(&serde_json::json!({ "device": label, "kernels": kernels })))
}
