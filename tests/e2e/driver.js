'use strict';
// Drives the real botframework-directlinejs 0.15.8 client under Node 20 for
// tests/test_e2e_directlinejs.py (Python side: tests/support/directlinejs.py).
//
// Protocol: one JSON command per line on stdin; one JSON event per line on stdout.
//   {"cmd": "start", "client": "a", "options": {domain, token | secret, conversationId?,
//                                               webSocket, pollingInterval?, timeScale?}}
//   {"cmd": "post", "client": "a", "ref": "r1", "activity": {...}}
//   {"cmd": "upload", "client": "a", "ref": "r2", "activity": {...},
//    "files": [{"name", "contentType", "base64"}]}
//   {"cmd": "fetch", "ref": "r3", "url": "...", "headers": {...}}
//   {"cmd": "end", "client": "a"}        {"cmd": "exit"}
// Events: ready, status, activity, socket, token, activity_error, posted, post_error,
// fetched, ended, fatal. Every event of a client carries "client"; every answer carries "ref".
// "token" reports each new token the client adopts (from a refresh or a reconnect), with
// the wall-clock time in ms.
//
// timeScale N runs the client's own clock N times faster: its rxjs scheduler (every timer
// the client sets through it: the 15-minute token refresh, the 20-second stream ping, retry
// delays) waits 1/N of each delay and reports a clock that advances N times as fast. The
// server's clock is untouched, so hours of client time pass in minutes against real tokens.
//
// The client runs exactly as it ships. What the harness adds: the two globals Node lacks
// (XMLHttpRequest from xhr2, WebSocket from ws), a ws subclass per client that reports
// when its sockets open and close, and an `ajax` option that sends FormData uploads (and
// the arraybuffer GET that reads each attachment first) with fetch, since xhr2 cannot.
// Every other request goes through the client's own rxjs ajax over xhr2.

global.XMLHttpRequest = require('xhr2');
const WS = require('ws');
// A global: passing WebSocket only as an option makes the client fall back to polling.
global.WebSocket = WS;

const readline = require('readline');
const { Observable } = require('rxjs/Observable');
require('rxjs/add/observable/dom/ajax');
const { DirectLine, ConnectionStatus } = require('botframework-directlinejs');
const { AsyncAction } = require('rxjs/scheduler/AsyncAction');
const { AsyncScheduler } = require('rxjs/scheduler/AsyncScheduler');

const STATUS_NAMES = Object.fromEntries(
  Object.entries(ConnectionStatus).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v, k])
);

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

// The ws class a client opens its streams with: ws itself, reporting open/close/error.
function trackedWebSocket(client) {
  return class TrackedWebSocket extends WS {
    constructor(url, ...rest) {
      super(url, ...rest);
      const streamUrl = String(url);
      this.on('open', () => emit({ event: 'socket', client, state: 'open', url: streamUrl }));
      this.on('close', (code, reason) =>
        emit({ event: 'socket', client, state: 'close', code, reason: String(reason), url: streamUrl })
      );
      this.on('error', (error) =>
        emit({ event: 'socket', client, state: 'error', message: String(error && error.message) })
      );
    }
  };
}

// rxjs 5 AjaxError look-alike: the client reads .status (and .response for bodies).
function ajaxError(status, response, message) {
  const error = new Error(message || `ajax error ${status}`);
  error.status = status;
  error.response = response;
  return error;
}

function fetchAjax(request) {
  return Observable.create((subscriber) => {
    const controller = new AbortController();
    const timer = request.timeout ? setTimeout(() => controller.abort(), request.timeout) : null;
    fetch(request.url, {
      method: request.method || 'GET',
      headers: request.headers || {},
      body: request.body,
      signal: controller.signal,
    })
      .then(async (response) => {
        let body;
        if (request.responseType === 'arraybuffer') {
          body = await response.arrayBuffer();
        } else {
          const text = await response.text();
          try {
            body = text ? JSON.parse(text) : null;
          } catch (e) {
            body = text;
          }
        }
        if (response.status >= 200 && response.status < 300) {
          subscriber.next({ status: response.status, response: body, request });
          subscriber.complete();
        } else {
          subscriber.error(ajaxError(response.status, body));
        }
      })
      .catch((error) => subscriber.error(ajaxError(0, null, String(error && error.message))))
      .finally(() => timer && clearTimeout(timer));
    return () => controller.abort();
  });
}

function ajax(request) {
  if (request.body instanceof FormData || request.responseType === 'arraybuffer') {
    return fetchAjax(request);
  }
  return Observable.ajax(request);
}

// An rxjs 5 scheduler whose clock runs `scale` times faster than the wall clock. Both the
// waits and now() are scaled, so operators that compare times (delay) stay consistent.
function scaledScheduler(scale) {
  class ScaledAction extends AsyncAction {
    requestAsyncId(scheduler, id, delay = 0) {
      return super.requestAsyncId(scheduler, id, delay / scale);
    }
  }
  const origin = Date.now();
  return new AsyncScheduler(ScaledAction, () => origin + (Date.now() - origin) * scale);
}

// Report every token the client adopts: the client keeps it in a plain property.
function reportTokens(name, directLine) {
  let current = directLine.token;
  Object.defineProperty(directLine, 'token', {
    configurable: true,
    enumerable: true,
    get: () => current,
    set: (value) => {
      if (value !== current) emit({ event: 'token', client: name, token: value, at: Date.now() });
      current = value;
    },
  });
}

const clients = new Map();

function start(name, options) {
  if (clients.has(name)) throw new Error(`client ${name} already started`);
  const { timeScale, ...clientOptions } = options;
  const directLine = new DirectLine({
    ...clientOptions,
    ...(timeScale ? { scheduler: scaledScheduler(timeScale) } : {}),
    WebSocket: trackedWebSocket(name),
    ajax,
  });
  reportTokens(name, directLine);
  const subscriptions = [
    directLine.connectionStatus$.subscribe((status) =>
      emit({ event: 'status', client: name, status: STATUS_NAMES[status] || status })
    ),
    // Subscribing to activity$ is what starts the connection.
    directLine.activity$.subscribe(
      (activity) => emit({ event: 'activity', client: name, activity, watermark: directLine.watermark }),
      (error) =>
        emit({
          event: 'activity_error',
          client: name,
          status: error && error.status,
          message: String((error && error.message) || error),
        })
    ),
  ];
  clients.set(name, { directLine, subscriptions });
}

function client(name) {
  const entry = clients.get(name);
  if (!entry) throw new Error(`no client ${name}`);
  return entry;
}

function post(name, ref, activity) {
  client(name).directLine.postActivity(activity).subscribe(
    (id) => emit({ event: 'posted', client: name, ref, id }),
    (error) =>
      emit({
        event: 'post_error',
        client: name,
        ref,
        status: error && error.status,
        message: String((error && error.message) || error),
      })
  );
}

function upload(name, ref, activity, files) {
  // What Web Chat does with picked files: each attachment's contentUrl is a URL the client
  // can read (a blob: URL in the browser; a data: URL here), its name and type.
  const attachments = files.map((file) => ({
    name: file.name,
    contentType: file.contentType,
    contentUrl: `data:${file.contentType};base64,${file.base64}`,
  }));
  post(name, ref, { ...activity, attachments });
}

async function fetchBack(ref, url, headers) {
  try {
    const response = await fetch(url, { headers: headers || {} });
    const bytes = Buffer.from(await response.arrayBuffer());
    emit({
      event: 'fetched',
      ref,
      status: response.status,
      contentType: response.headers.get('content-type'),
      base64: bytes.toString('base64'),
    });
  } catch (error) {
    emit({ event: 'fetched', ref, status: 0, message: String(error && error.message) });
  }
}

function end(name) {
  const { directLine, subscriptions } = client(name);
  // end() moves the status to Ended, which errors the activity stream; unsubscribe after.
  directLine.end();
  subscriptions.forEach((s) => s.unsubscribe());
  clients.delete(name);
  emit({ event: 'ended', client: name });
}

function handle(command) {
  switch (command.cmd) {
    case 'start':
      return start(command.client, command.options);
    case 'post':
      return post(command.client, command.ref, command.activity);
    case 'upload':
      return upload(command.client, command.ref, command.activity, command.files);
    case 'fetch':
      return fetchBack(command.ref, command.url, command.headers);
    case 'end':
      return end(command.client);
    case 'exit':
      for (const name of [...clients.keys()]) end(name);
      emit({ event: 'bye' });
      return process.exit(0);
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  try {
    handle(JSON.parse(line));
  } catch (error) {
    emit({ event: 'fatal', message: String((error && error.stack) || error), line });
  }
});
// The test process went away: stop too, never linger.
lines.on('close', () => process.exit(0));
process.on('uncaughtException', (error) => emit({ event: 'fatal', message: String(error.stack || error) }));
emit({ event: 'ready', node: process.version, directlinejs: require('botframework-directlinejs/package.json').version });
