// Alpine components for the quaero jobs page (pages/jobs.html).
//
// The server renders a complete first page; these components take it over:
//   jobsPage   - status counts, filters, the roots table and its paging, kept live
//   newCrawl   - the "New crawl" form (POST /api/jobs, field errors next to inputs)
//   jobModal   - the details dialog: job, children, log tail, cancel/retry/delete
//   $store.confirm - the confirmation dialog every action goes through
//   $store.flash   - the one-line result of the last action
// They talk through window events ("open-job", "jobs-changed", "job-updated").
//
// The page runs under `script-src 'self'` with Alpine's CSP build, which evaluates
// attribute expressions with its own small parser (no eval): the template only uses
// property paths and method calls, and every bit of logic lives here. Everything from
// the API is shown with x-text, never as HTML: crawled titles and URLs are hostile.
'use strict';

(() => {
  const POLL_MS = 2000;
  const CHILDREN_LIMIT = 20;
  const DESC_LIMIT = 20;          // rows per page of the dialog's "All jobs" view
  const LOG_LIMIT = 200;
  const LOG_PAGES_PER_TICK = 5;   // catch up at most 1000 lines per poll
  const MAX_LOG_LINES = 5000;     // keep the DOM small on chatty jobs
  const SEARCH_DEBOUNCE_MS = 350;
  const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), '
    + 'summary, [tabindex]:not([tabindex="-1"])';
  const FINISHED = ['completed', 'failed', 'cancelled'];
  const ACTIVE = ['pending', 'running'];

  // ---- initial state and API --------------------------------------------------

  let state;
  /** The JSON the server embedded in #initial-state (parsed once). */
  function initialState() {
    if (state === undefined) {
      const el = document.getElementById('initial-state');
      try {
        state = el ? JSON.parse(el.textContent) : {};
      } catch (err) {
        console.error('quaero: bad #initial-state JSON', err);
        state = {};
      }
    }
    return state;
  }

  class ApiError extends Error {
    constructor(message, status, code, fields) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields || {};
    }
  }

  /** Call the JSON API; resolve to the response, or reject with an ApiError. */
  async function request(method, path, body, headers) {
    const options = {
      method,
      credentials: 'same-origin',
      cache: 'no-store',   // revalidation is ours (ETags below), not the HTTP cache's
      headers: { Accept: 'application/json', ...(headers || {}) },
    };
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch((initialState().api || '/api') + path, options);
    } catch (err) {
      throw new ApiError(`network error (${err.message})`, 0);
    }
    if (response.status === 304) return { response, data: null };
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      // A proxy or a crash page: report the status below.
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(error.message || `HTTP ${response.status}`, response.status, error.code, error.fields);
    }
    return { response, data };
  }

  /** A state-changing call (or a plain GET): the body of the answer. */
  async function api(method, path, body) {
    return (await request(method, path, body)).data;
  }

  // The last ETag and body of each polled URL: an unchanged answer is a bodiless 304.
  // Not the browser's HTTP cache (`cache: 'no-cache'`): it revalidates the same way only
  // where answers may be stored, and signed in (a token) every answer is `no-store`, so
  // it would fetch every body again (tests/browser/test_page_rows.py); and where it does
  // revalidate, fetch hands back a 200 with the body, so telling "unchanged" (nothing to
  // parse or redraw) would still need the ETag kept here.
  const ETAGS = new Map();
  const MAX_ETAGS = 64;

  /** GET with If-None-Match: {changed, data}; `changed` is false on a 304. */
  async function poll304(path) {
    const known = ETAGS.get(path);
    const { response, data } = await request('GET', path, undefined, known ? { 'If-None-Match': known.etag } : {});
    if (response.status === 304 && known) return { changed: false, data: known.data };
    const etag = response.headers.get('ETag');
    ETAGS.delete(path);
    if (etag) {
      ETAGS.set(path, { etag, data });
      if (ETAGS.size > MAX_ETAGS) ETAGS.delete(ETAGS.keys().next().value);
    }
    return { changed: true, data };
  }

  /** "a=1&b=x" from an object, leaving out empty values. */
  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== '' && value !== null && value !== undefined) search.set(key, String(value));
    }
    return search.toString();
  }

  /** Run fn every ms while the tab is visible, never two at once; at once on becoming visible. */
  function poll(fn, ms) {
    let busy = false;
    const tick = async () => {
      if (busy || document.visibilityState !== 'visible') return;
      busy = true;
      try {
        await fn();
      } finally {
        busy = false;
      }
    };
    setInterval(tick, ms);
    document.addEventListener('visibilitychange', tick);
  }

  function emit(name, detail) {
    window.dispatchEvent(new CustomEvent(name, { detail }));
  }

  function flash(text, kind) {
    window.Alpine.store('flash').show(text, kind);
  }

  // ---- formatting shared by the components (same output as the Jinja macros) ----

  const format = {
    label(job) {
      // Listings carry `summary` (the URL cut short), a job's details its whole payload.
      return job.name || (job.summary && job.summary.url) || (job.payload && job.payload.url) || '(unnamed)';
    },
    fmtTime(iso) {
      return iso ? String(iso).slice(0, 19).replace('T', ' ') : '—';
    },
    fmtDuration(seconds) {
      if (seconds === null || seconds === undefined) return '—';
      if (seconds < 10) return `${seconds.toFixed(2)} s`;
      if (seconds < 60) return `${seconds.toFixed(1)} s`;
      const pad = (n) => String(Math.floor(n)).padStart(2, '0');
      if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${pad(seconds % 60)}s`;
      return `${Math.floor(seconds / 3600)}h ${pad((seconds % 3600) / 60)}m`;
    },
    pct(job) {
      return Math.max(0, Math.min(100, Math.round((job.progress || 0) * 100)));
    },
    pctText(job) {
      return `${format.pct(job)}%`;
    },
    count(job, status) {
      return (job.counts && job.counts[status]) || 0;
    },
    doneText(job) {
      const c = job.counts || {};
      // A job without descendants shows its own progress, not "0/0".
      if (!c.total) return 'no descendants';
      const done = (c.completed || 0) + (c.failed || 0) + (c.cancelled || 0);
      return `${done}/${c.total} (${c.failed || 0} failed)`;
    },
    /** "with 3 failed" after a completed root's badge: a tree's failures show at its top
     * (the same text as the server-rendered row). */
    withFailedText(job) {
      const failed = format.count(job, 'failed');
      return job.status === 'completed' && failed ? `with ${failed} failed` : '';
    },
    badgeClass(status) {
      return `badge-${status}`;
    },
    statusBadgeClass(job) {
      return format.count(job, 'failed') ? `badge-${job.status} has-failures` : `badge-${job.status}`;
    },
    json(value) {
      return JSON.stringify(value === undefined ? null : value, null, 2);
    },
    readOnly() {
      return Boolean(initialState().read_only);
    },
    canCancel(job) {
      return !format.readOnly() && ACTIVE.includes(job.status);
    },
    canDelete(job) {
      return !format.readOnly() && FINISHED.includes(job.status);
    },
    canPause(job) {
      return !format.readOnly() && ACTIVE.includes(job.status) && !job.paused;
    },
    canResume(job) {
      return !format.readOnly() && Boolean(job.paused);
    },
    canRetry(job) {
      if (format.readOnly()) return false;
      return job.status === 'failed' || job.status === 'cancelled'
        || format.count(job, 'failed') > 0 || format.count(job, 'cancelled') > 0;
    },
  };

  // ---- actions: confirm, call the API, show the result at once -------------------

  const ACTIONS = {
    cancel: {
      question: 'Cancel job %s and every unfinished job under it?',
      button: 'Cancel job',
      done: 'Cancelled job %s.',
    },
    retry: {
      question: 'Run the failed and cancelled jobs under %s again?',
      button: 'Retry',
      done: 'Retrying the failed and cancelled jobs of %s.',
    },
    delete: {
      question: 'Delete job %s with all its descendants and logs? This cannot be undone.',
      button: 'Delete',
      done: 'Deleted job %s.',
    },
    pause: {
      question: 'Pause job %s? Its pending jobs wait until you resume it (running ones finish).',
      button: 'Pause',
      done: 'Paused job %s.',
      safe: true,
    },
    resume: {
      question: 'Resume job %s and release its pending jobs?',
      button: 'Resume',
      done: 'Resumed job %s.',
      safe: true,
    },
  };

  /** Confirm, run cancel/retry/delete/pause/resume on a job, report it; true when done. */
  async function runAction(kind, job) {
    const action = ACTIONS[kind];
    const name = `#${job.id}`;
    const ok = await window.Alpine.store('confirm').ask(
      action.question.replace('%s', `${name} (${format.label(job)})`), action.button,
      kind !== 'retry' && !action.safe,
    );
    if (!ok) return false;
    let answer;
    try {
      if (kind === 'delete') answer = await api('DELETE', `/jobs/${job.id}`);
      else answer = await api('POST', `/jobs/${job.id}/${kind}`, {});
    } catch (err) {
      flash(`Could not ${kind} job ${name}: ${err.message}`, 'error');
      emit('jobs-changed', { id: job.id, action: 'refresh' });
      return false;
    }
    flash(action.done.replace('%s', name), 'ok');
    // The answer is the job's new state: show it before the next poll comes round.
    if (kind !== 'delete' && answer && answer.id === job.id) emit('job-updated', { job: answer });
    emit('jobs-changed', { id: job.id, action: kind });
    return true;
  }

  // ---- bulk actions: everything a filter matches (POST /api/jobs/bulk) -------------

  const BULK = {
    retry: { verb: 'Retry', what: 'failed or cancelled jobs', button: 'Retry them', safe: true },
    cancel: { verb: 'Cancel', what: 'unfinished jobs', button: 'Cancel them' },
    delete: { verb: 'Delete', what: 'jobs (whole finished trees, with their logs; this cannot be undone)', button: 'Delete them' },
    pause: { verb: 'Pause', what: 'unfinished jobs', button: 'Pause them', safe: true },
    resume: { verb: 'Resume', what: 'held-back jobs', button: 'Resume them', safe: true },
  };

  /** Count what a bulk action touches, ask with that number, do it, report; true when done. */
  async function runBulk(kind, filter, scope) {
    const action = BULK[kind];
    let counted;
    try {
      counted = await api('POST', '/jobs/bulk', { action: kind, filter, dry_run: true });
    } catch (err) {
      flash(`Could not count the jobs to ${kind}: ${err.message}`, 'error');
      return false;
    }
    if (!counted.jobs) {
      flash(`Nothing to ${kind}: none of the ${counted.matched} matching trees has ${action.what.split(' (')[0]}.`, 'info');
      return false;
    }
    const trees = counted.matched === 1 ? '1 tree' : `${counted.matched} trees`;
    const question = `${action.verb} ${counted.jobs} ${action.what} in ${trees} ${scope}?`;
    const ok = await window.Alpine.store('confirm').ask(question, action.button, !action.safe);
    if (!ok) return false;
    let answer;
    try {
      answer = await api('POST', '/jobs/bulk', { action: kind, filter });
    } catch (err) {
      flash(`Could not ${kind}: ${err.message}`, 'error');
      return false;
    }
    if (answer.job_id) {
      flash(`${action.verb}: ${answer.jobs} jobs in ${answer.matched} trees, as bulk job #${answer.job_id}.`, 'ok');
    } else {
      const skipped = answer.skipped ? `, ${answer.skipped} skipped (wrong state)` : '';
      flash(`${action.verb}: ${answer.done} of ${answer.matched} trees done${skipped}.`, 'ok');
    }
    emit('jobs-changed', { action: `bulk-${kind}` });
    return true;
  }

  // ---- the address bar: filters and the open job ---------------------------------

  const DEFAULT_LIMIT = 50;

  /** Filters and open job read from the current URL. */
  function readUrl() {
    const params = new URLSearchParams(window.location.search);
    const int = (key, fallback) => {
      const value = Number.parseInt(params.get(key) || '', 10);
      return Number.isFinite(value) && value >= 0 ? value : fallback;
    };
    const job = params.get('job');
    return {
      filters: {
        status: params.get('status') || '',
        has_failures: params.get('has_failures') === 'true' ? 'true' : '',
        type: params.get('type') || '',
        q: params.get('q') || '',
        limit: int('limit', DEFAULT_LIMIT) || DEFAULT_LIMIT,
        offset: int('offset', 0),
      },
      job: job && /^\d+$/.test(job) ? Number(job) : null,
    };
  }

  /** "?status=…&job=…" for these filters and open job (defaults left out). */
  function pageSearch(filters, job) {
    const search = query({
      status: filters.status,
      has_failures: filters.has_failures,
      type: filters.type,
      q: filters.q,
      limit: filters.limit && filters.limit !== DEFAULT_LIMIT ? filters.limit : '',
      offset: filters.offset || '',
      job: job === null || job === undefined ? '' : job,
    });
    return search ? `?${search}` : '?';
  }

  /** The open job in the address bar (no history entry: closing is not "back"). */
  function setJobInUrl(id) {
    const url = new URL(window.location.href);
    if (id === null) url.searchParams.delete('job');
    else url.searchParams.set('job', String(id));
    if (url.href !== window.location.href) window.history.replaceState(window.history.state, '', url);
  }

  document.addEventListener('alpine:init', () => {
    const Alpine = window.Alpine;

    Alpine.store('flash', {
      text: '',
      kind: 'info',
      timer: null,
      show(text, kind = 'info') {
        this.text = text;
        this.kind = kind;
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.clear(), kind === 'error' ? 12000 : 6000);
      },
      clear() {
        this.text = '';
      },
      flashClass() {
        return `flash-${this.kind}`;
      },
    });

    // A <dialog> of our own instead of window.confirm(): styled, keyboard-friendly,
    // and a test can treat any native dialog as a script that should not have run.
    Alpine.store('confirm', {
      open: false,
      text: '',
      button: 'OK',
      danger: true,
      resolve: null,
      ask(text, button, danger) {
        const dialog = document.getElementById('confirm-dialog');
        if (this.resolve) this.resolve(false);
        this.text = text;
        this.button = button;
        this.danger = danger;
        this.open = true;
        return new Promise((resolve) => {
          this.resolve = resolve;
          if (dialog && !dialog.open) dialog.showModal();
          const ok = document.getElementById('confirm-ok');
          if (ok) ok.focus();
        });
      },
      answer(value) {
        const resolve = this.resolve;
        this.resolve = null;
        this.open = false;
        const dialog = document.getElementById('confirm-dialog');
        if (dialog && dialog.open) dialog.close();
        if (resolve) resolve(value);
      },
      yes() {
        this.answer(true);
      },
      no() {
        this.answer(false);
      },
      okClass() {
        return this.danger ? 'danger' : 'primary';
      },
    });

    // ---- the roots table, counts, filters and paging --------------------------------

    Alpine.data('jobsPage', () => ({
      ...format,
      jobs: [],
      total: 0,
      filters: { status: '', has_failures: '', type: '', q: '', limit: DEFAULT_LIMIT, offset: 0 },
      stats: { counts: {} },
      refreshError: '',
      requested: 0,   // sequence number of the last refresh sent ...
      applied: 0,     // ... and of the last one shown, so a slow answer never wins
      searchTimer: null,
      listPath: '',   // the URL the shown rows came from
      selectAll: false,   // "select all that match": the bulk actions act on the filter
      bulkBusy: false,

      init() {
        const initial = initialState();
        this.jobs = initial.jobs || [];
        this.total = initial.total || 0;
        this.filters = { ...this.filters, ...(initial.filters || {}) };
        this.stats = initial.stats || { counts: {} };
        // The x-for rows take over from the server-rendered ones: one copy only.
        const serverRows = this.$el.querySelector('[data-server-rows]');
        if (serverRows) serverRows.remove();
        window.addEventListener('jobs-changed', () => this.refresh());
        window.addEventListener('job-updated', (event) => this.patchRow(event.detail.job));
        window.addEventListener('popstate', () => this.fromUrl());
        poll(() => this.refresh(), POLL_MS);
      },

      async refresh() {
        const seq = ++this.requested;
        const f = this.filters;
        const listPath = '/jobs?' + query({
          status: f.status, has_failures: f.has_failures, type: f.type, q: f.q, limit: f.limit, offset: f.offset,
        });
        try {
          const [list, stats] = await Promise.all([poll304(listPath), poll304('/stats')]);
          if (seq < this.applied) return;
          this.applied = seq;
          // Rows are keyed by id, so a new array only touches the rows that changed:
          // scroll position, focus and text selections stay where they are. A 304 means
          // "as last time for this URL": new after a change of filters all the same.
          if (list.changed || listPath !== this.listPath) {
            this.listPath = listPath;
            this.jobs = list.data.jobs;
            this.total = list.data.total;
          }
          if (stats.changed) this.stats = stats.data;
          this.refreshError = '';
        } catch (err) {
          this.refreshError = `Auto-refresh failed: ${err.message}. Retrying…`;
        }
      },

      /** Show an action's answer in its row at once. */
      patchRow(job) {
        const at = this.jobs.findIndex((row) => row.id === job.id);
        if (at >= 0) this.jobs = [...this.jobs.slice(0, at), job, ...this.jobs.slice(at + 1)];
      },

      // -- filters and the address bar
      applyFilters() {
        clearTimeout(this.searchTimer);
        this.selectAll = false;   // a selection is of what the last filters matched
        this.filters.offset = 0;
        this.navigate();
      },
      searchTyped() {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.applyFilters(), SEARCH_DEBOUNCE_MS);
      },
      setStatus(status) {
        this.filters.status = status;
        this.filters.has_failures = '';
        this.applyFilters();
      },
      /** The "with failures" chip: roots whose trees hold failed jobs. */
      showFailures() {
        this.filters.status = '';
        this.filters.has_failures = 'true';
        this.applyFilters();
      },
      clearFilters() {
        this.filters.status = '';
        this.filters.has_failures = '';
        this.filters.type = '';
        this.filters.q = '';
        this.applyFilters();
      },
      hasFilters() {
        return Boolean(this.filters.status || this.filters.has_failures || this.filters.type || this.filters.q);
      },
      goPage(step) {
        const f = this.filters;
        f.offset = Math.max(0, (f.offset || 0) + step * (f.limit || DEFAULT_LIMIT));
        this.navigate();
      },
      /** Push the filters into the URL (a history entry: Back undoes a filter) and reload. */
      navigate() {
        const search = pageSearch(this.filters, readUrl().job);
        if (search !== (window.location.search || '?')) window.history.pushState(null, '', search);
        this.refresh();
      },
      /** Back/Forward: take filters (and the open job) from the URL. */
      fromUrl() {
        const { filters, job } = readUrl();
        this.filters = filters;
        this.refresh();
        emit(job === null ? 'close-job' : 'open-job', { id: job });
      },

      // -- select all that match, and act on them
      canSelectAll() {
        return !format.readOnly() && this.hasFilters() && this.total > 0;
      },
      selectAllHint() {
        return !format.readOnly() && !this.hasFilters() && this.total > 0;
      },
      selectAllText() {
        return this.total === 1 ? 'Select the 1 root job that matches' : `Select all ${this.total} root jobs that match`;
      },
      /** The bulk filter of the table's filters (the roots they list). */
      bulkFilter() {
        const f = this.filters;
        const filter = {};
        if (f.status) filter.status = f.status;
        if (f.type) filter.type = f.type;
        if (f.q) filter.q = f.q;
        if (f.has_failures) filter.has_failures = true;
        return filter;
      },
      async bulk(kind) {
        this.bulkBusy = true;
        try {
          if (await runBulk(kind, this.bulkFilter(), 'under the root jobs that match these filters')) {
            this.selectAll = false;
          }
        } finally {
          this.bulkBusy = false;
        }
      },

      // -- the workers panel (from /api/stats)
      workerRows() {
        return this.stats.workers || [];
      },
      noWorkers() {
        return this.workerRows().length === 0;
      },
      workersCount() {
        return `(${this.workerRows().length})`;
      },
      noRunning(w) {
        return !(w.running_jobs && w.running_jobs.length);
      },
      jobIdText(id) {
        return `#${id}`;
      },
      heartbeatAgo(w) {
        if (!w.last_heartbeat) return '—';
        const seconds = Math.max(0, Date.now() / 1000 - w.last_heartbeat);
        return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s ago`;
      },

      // -- what the template reads
      // The chips count roots (`root_counts`): each one is what its filter lists.
      countOf(status) {
        return (this.stats.root_counts && this.stats.root_counts[status]) || 0;
      },
      rootsWithFailures() {
        return this.stats.roots_with_failures || 0;
      },
      queueDepth() {
        return this.stats.queue_depth === undefined ? '—' : this.stats.queue_depth;
      },
      workersAlive() {
        return this.stats.workers_alive || 0;
      },
      // Object form: it also removes a class the server rendered.
      workersClass() {
        return { warn: !this.stats.workers_alive };
      },
      statClass(status) {
        return { active: this.filters.status === status && !this.filters.has_failures };
      },
      statCurrent(status) {
        return this.filters.status === status && !this.filters.has_failures ? 'true' : null;
      },
      statusHref(status) {
        return pageSearch({ ...this.filters, status, has_failures: '', offset: 0 }, null);
      },
      failuresClass() {
        return { active: Boolean(this.filters.has_failures) };
      },
      failuresCurrent() {
        return this.filters.has_failures ? 'true' : null;
      },
      failuresHref() {
        return pageSearch({ ...this.filters, status: '', has_failures: 'true', offset: 0 }, null);
      },
      jobHref(id) {
        return pageSearch(this.filters, id);
      },
      openJob(id) {
        emit('open-job', { id });
      },
      act(kind, job) {
        return runAction(kind, job);
      },
      hasPrev() {
        return (this.filters.offset || 0) > 0;
      },
      hasNext() {
        return (this.filters.offset || 0) + (this.filters.limit || 0) < this.total;
      },
      noPrev() {
        return !this.hasPrev();
      },
      noNext() {
        return !this.hasNext();
      },
      prevHref() {
        const f = this.filters;
        return pageSearch({ ...f, offset: Math.max(0, f.offset - f.limit) }, null);
      },
      nextHref() {
        const f = this.filters;
        return pageSearch({ ...f, offset: f.offset + f.limit }, null);
      },
      noJobs() {
        return this.jobs.length === 0;
      },
      rangeText() {
        if (!this.total) return 'no jobs';
        const first = (this.filters.offset || 0) + 1;
        const last = (this.filters.offset || 0) + this.jobs.length;
        return last < first ? `nothing here (${this.total} in total)` : `showing ${first}–${last} of ${this.total}`;
      },
    }));

    // ---- the "New crawl" form ----------------------------------------------------

    const FORM_FIELDS = ['payload.url', 'payload.depth', 'payload.max_pages', 'payload.same_host'];

    Alpine.data('newCrawl', () => ({
      busy: false,
      errors: {},
      formError: '',

      errorFor(key) {
        return this.errors[key] || '';
      },
      invalid(key) {
        return this.errors[key] ? 'true' : null;
      },
      hidden() {
        return format.readOnly();
      },

      async submit() {
        const form = this.$el;
        const data = new FormData(form);
        const payload = { url: String(data.get('url') || '').trim(), same_host: data.get('same_host') !== null };
        for (const key of ['depth', 'max_pages']) {
          const raw = String(data.get(key) || '').trim();
          // Integers go as numbers; anything else as typed, for the server to judge.
          if (raw !== '') payload[key] = /^-?\d+$/.test(raw) ? Number(raw) : raw;
        }
        this.busy = true;
        this.errors = {};
        this.formError = '';
        try {
          const job = await api('POST', '/jobs', { type: 'crawler', payload });
          form.elements.url.value = '';
          flash(`Started crawl #${job.id}.`, 'ok');
          emit('jobs-changed', { id: job.id, action: 'create' });
          emit('open-job', { id: job.id });
        } catch (err) {
          this.errors = err.fields || {};
          const others = Object.entries(this.errors)
            .filter(([key]) => !FORM_FIELDS.includes(key))
            .map(([key, message]) => `${key}: ${message}`);
          this.formError = [err.message, ...others].join(' — ');
          this.busy = false;
          this.$nextTick(() => {
            const first = FORM_FIELDS.find((key) => this.errors[key]);
            const input = first && form.elements[first.slice('payload.'.length)];
            if (input && input.focus) input.focus();
          });
        } finally {
          this.busy = false;
        }
      },
    }));

    // ---- the details dialog ------------------------------------------------------

    Alpine.data('jobModal', () => ({
      ...format,
      statuses: [],
      isOpen: false,
      jobId: null,
      job: null,
      error: '',
      gone: false,          // 404: stop polling a deleted job
      trail: [],            // [{id, label}] from the root down to the open job
      children: [],
      childrenPath: '',     // the URL the shown children came from
      childrenTotal: 0,
      childOffset: 0,
      childStatus: '',
      logs: [],
      lastLogId: 0,
      logLevel: 'debug',
      logTree: false,       // the log of the whole tree under the job, not its own
      follow: true,
      view: 'children',     // children | all | failures
      desc: [],             // the "All jobs" view: a page of descendants
      descPath: '',
      descTotal: 0,
      descPage: 1,
      descPageInput: '1',
      descStatus: '',
      descGroup: '',        // an error group's key (from the Failures view)
      groups: [],           // the Failures view
      groupsPath: '',
      generation: 0,        // bumped when the open job changes: late answers are dropped
      logGeneration: 0,     // bumped when the log is reset
      returnFocus: null,

      init() {
        this.statuses = initialState().statuses || [];
        window.addEventListener('open-job', (event) => this.open(event.detail.id));
        window.addEventListener('close-job', () => this.close());
        window.addEventListener('jobs-changed', (event) => this.onJobsChanged(event.detail || {}));
        window.addEventListener('job-updated', (event) => {
          if (event.detail.job.id === this.jobId) this.job = event.detail.job;
        });
        poll(() => this.refresh(), POLL_MS);
        const first = initialState().open_job;
        if (first !== null && first !== undefined) this.open(first);
      },

      open(id) {
        id = Number(id);
        if (!this.isOpen) {
          this.returnFocus = document.activeElement;
          this.isOpen = true;
          document.getElementById('page-content')?.setAttribute('inert', '');
          document.documentElement.classList.add('modal-open');
          this.$nextTick(() => this.$refs.closeButton.focus());
        }
        if (id !== this.jobId) {
          this.generation++;
          this.jobId = id;
          this.job = null;
          this.error = '';
          this.gone = false;
          this.children = [];
          this.childrenPath = '';
          this.childrenTotal = 0;
          this.childOffset = 0;
          this.childStatus = '';
          this.resetViews();
          this.clearLogs();
          const panel = this.$refs.panel;
          if (panel) panel.scrollTop = 0;
        }
        setJobInUrl(id);
        return this.refresh();
      },

      close() {
        if (!this.isOpen) return;
        this.isOpen = false;
        this.generation++;
        this.jobId = null;
        this.job = null;
        this.trail = [];
        this.clearLogs();
        document.getElementById('page-content')?.removeAttribute('inert');
        document.documentElement.classList.remove('modal-open');
        setJobInUrl(null);
        if (this.returnFocus && this.returnFocus.isConnected) this.returnFocus.focus();
      },

      /** Tab and Shift+Tab cycle through the dialog's controls (the page behind is inert). */
      trapTab(event) {
        const panel = this.$refs.panel;
        const focusable = Array.from(panel.querySelectorAll(FOCUSABLE))
          .filter((el) => el.getClientRects().length > 0);
        if (!focusable.length) return;
        const first = focusable[0];
        const last = focusable[focusable.length - 1];
        const active = document.activeElement;
        if (!panel.contains(active) || (event.shiftKey ? active === first : active === last)) {
          event.preventDefault();
          (event.shiftKey ? last : first).focus();
        }
      },

      /** Esc closes the dialog, unless it is answering a confirmation. */
      onEscape() {
        if (Alpine.store('confirm').open) return;
        this.close();
      },

      async refresh() {
        if (!this.isOpen || this.jobId === null || this.gone) return;
        await Promise.all([this.loadJob(), this.loadView(), this.loadLogs()]);
      },

      onJobsChanged(detail) {
        if (!this.isOpen) return;
        if (detail.action === 'delete' && detail.id === this.jobId) {
          // The open job is gone: step back to its parent, or close.
          const parent = this.trail.length > 1 ? this.trail[this.trail.length - 2] : null;
          if (parent) this.open(parent.id);
          else this.close();
          return;
        }
        this.refresh();
      },

      async loadJob() {
        const generation = this.generation;
        const id = this.jobId;
        try {
          const { changed, data } = await poll304(`/jobs/${id}`);
          if (generation !== this.generation) return;
          if (changed || !this.job) this.job = data;
          this.error = '';
          await this.updateTrail(data, generation);
        } catch (err) {
          if (generation !== this.generation) return;
          if (err.status === 404) {
            this.gone = true;
            this.job = null;
            this.error = `Job #${id} was not found (it may have been deleted).`;
          } else {
            this.error = `Could not load job #${id}: ${err.message}`;
          }
        }
      },

      /** Keep the breadcrumb a path from the root to the open job. */
      async updateTrail(job, generation) {
        const crumb = { id: job.id, label: format.label(job) };
        const at = this.trail.findIndex((c) => c.id === job.id);
        if (at >= 0) {
          if (this.trail.length !== at + 1 || this.trail[at].label !== crumb.label) {
            this.trail = [...this.trail.slice(0, at), crumb];
          }
          return;
        }
        const last = this.trail[this.trail.length - 1];
        if (last && last.id === job.parent_id) {
          this.trail = [...this.trail, crumb];
          return;
        }
        // Opened directly (table, ?job=ID, parent link): walk up to the root.
        const path = [crumb];
        let parentId = job.parent_id;
        while (parentId && path.length < 50) {
          try {
            const parent = await api('GET', `/jobs/${parentId}`);
            path.unshift({ id: parent.id, label: format.label(parent) });
            parentId = parent.parent_id;
          } catch (err) {
            break;
          }
        }
        if (generation === this.generation) this.trail = path;
      },

      /** Poll one of the lists under the open job; `show(data)` when it is news for
       * what is shown, whose URL is kept in this[shownPath]. */
      async loadList(path, shownPath, show, what) {
        const generation = this.generation;
        try {
          const { changed, data } = await poll304(path);
          if (generation !== this.generation) return;
          // A 304 means "as last time for this URL", not "as shown now" (filters change).
          if (!changed && path === this[shownPath]) return;
          this[shownPath] = path;
          show(data);
        } catch (err) {
          if (generation === this.generation && err.status !== 404) {
            this.error = `Could not load ${what}: ${err.message}`;
          }
        }
      },

      loadChildren() {
        const params = query({ limit: CHILDREN_LIMIT, offset: this.childOffset, status: this.childStatus });
        return this.loadList(`/jobs/${this.jobId}/children?${params}`, 'childrenPath', (data) => {
          this.children = data.jobs;
          this.childrenTotal = data.total;
        }, 'children');
      },

      // -- the views under the job: children, all jobs (descendants), failures
      resetViews() {
        this.desc = [];
        this.descPath = '';
        this.descTotal = 0;
        this.descPage = 1;
        this.descPageInput = '1';
        this.descStatus = '';
        this.descGroup = '';
        this.groups = [];
        this.groupsPath = '';
      },
      loadView() {
        if (this.view === 'all') return this.loadDescendants();
        if (this.view === 'failures') return this.loadFailures();
        return this.loadChildren();
      },
      setView(view) {
        this.view = view;
        return this.loadView();
      },
      viewIs(view) {
        return this.view === view;
      },
      viewPressed(view) {
        return this.view === view ? 'true' : 'false';
      },

      loadDescendants() {
        const params = query({
          limit: DESC_LIMIT, offset: (this.descPage - 1) * DESC_LIMIT,
          status: this.descStatus, error_group: this.descGroup,
        });
        return this.loadList(`/jobs/${this.jobId}/descendants?${params}`, 'descPath', (data) => {
          this.desc = data.jobs;
          this.descTotal = data.total;
        }, `the jobs under #${this.jobId}`);
      },
      reloadDescendants() {
        return this.goDescPage(1);
      },
      descPages() {
        return Math.max(1, Math.ceil(this.descTotal / DESC_LIMIT));
      },
      goDescPage(page) {
        const wanted = Math.floor(Number(page));
        this.descPage = Number.isFinite(wanted) ? Math.min(Math.max(1, wanted), this.descPages()) : 1;
        this.descPageInput = String(this.descPage);
        return this.loadDescendants();
      },
      stepDescPage(step) {
        return this.goDescPage(this.descPage + step);
      },
      jumpDescPage() {
        return this.goDescPage(this.descPageInput);
      },
      descNoPrev() {
        return this.descPage <= 1;
      },
      descNoNext() {
        return this.descPage >= this.descPages();
      },
      descPagesText() {
        return `of ${this.descPages()}`;
      },
      descRangeText() {
        if (!this.descTotal) return 'none';
        const first = (this.descPage - 1) * DESC_LIMIT + 1;
        return `${first}–${first + this.desc.length - 1} of ${this.descTotal}`;
      },
      descCount() {
        return `(${this.descTotal})`;
      },
      noDesc() {
        return this.desc.length === 0;
      },
      clearGroup() {
        this.descGroup = '';
        this.descStatus = '';
        return this.reloadDescendants();
      },

      loadFailures() {
        return this.loadList(`/jobs/${this.jobId}/failures`, 'groupsPath', (data) => {
          this.groups = data.groups;
        }, `the failures under #${this.jobId}`);
      },
      noGroups() {
        return this.groups.length === 0;
      },
      groupsCount() {
        const failed = this.groups.reduce((sum, g) => sum + g.count, 0);
        return `(${failed} failed, ${this.groups.length} ${this.groups.length === 1 ? 'cause' : 'causes'})`;
      },
      groupWhen(g) {
        return g.first_at === g.last_at ? `at ${format.fmtTime(g.last_at)}`
          : `${format.fmtTime(g.first_at)} – ${format.fmtTime(g.last_at)}`;
      },
      exampleText(g) {
        return `example: #${g.example_job_id}`;
      },
      retryGroupText(g) {
        return `Retry these ${g.count}`;
      },
      canRetryGroups() {
        return !format.readOnly();
      },
      showGroup(g) {
        this.descGroup = g.key;
        this.descStatus = 'failed';
        this.view = 'all';
        return this.reloadDescendants();
      },
      async retryGroup(g) {
        const done = await runBulk('retry', { root_id: this.jobId, error_group: g.key },
          `under #${this.jobId} that failed with “${g.message}”`);
        if (done) {
          this.groupsPath = '';
          this.loadFailures();
        }
      },
      exportHref(fmt) {
        return `${initialState().api || '/api'}/jobs/${this.jobId}/export?format=${fmt}`;
      },
      jobIdText(id) {
        return `#${id}`;
      },

      reloadChildren() {
        this.childOffset = 0;
        return this.loadChildren();
      },
      childPage(step) {
        this.childOffset = Math.max(0, this.childOffset + step * CHILDREN_LIMIT);
        return this.loadChildren();
      },
      childNoPrev() {
        return this.childOffset <= 0;
      },
      childNoNext() {
        return this.childOffset + CHILDREN_LIMIT >= this.childrenTotal;
      },
      childRangeText() {
        if (!this.childrenTotal) return this.childStatus ? `none ${this.childStatus}` : 'none';
        const last = this.childOffset + this.children.length;
        return `${this.childOffset + 1}–${last} of ${this.childrenTotal}`;
      },
      childrenCount() {
        return `(${this.childrenTotal})`;
      },
      noChildren() {
        return this.children.length === 0;
      },
      childProgress(child) {
        return this.count(child, 'total') ? `${this.pct(child)}% · ${this.doneText(child)}` : `${this.pct(child)}%`;
      },
      /** A crawled page's <title>, as plain text (it is whatever the site says). */
      childTitle(child) {
        const title = child.summary && child.summary.title;
        return typeof title === 'string' ? title : '';
      },

      clearLogs() {
        this.logGeneration++;
        this.logs = [];
        this.lastLogId = 0;
      },
      resetLogs() {
        this.clearLogs();
        return this.loadLogs();
      },
      noLogs() {
        return this.logs.length === 0;
      },

      /** Append lines after the last one seen (tail -f by polling). */
      async loadLogs() {
        const generation = this.generation;
        const logGeneration = this.logGeneration;
        for (let page = 0; page < LOG_PAGES_PER_TICK; page++) {
          let lines;
          try {
            const params = query({
              after_id: this.lastLogId, limit: LOG_LIMIT, level: this.logLevel, tree: this.logTree ? 1 : '',
            });
            lines = (await poll304(`/jobs/${this.jobId}/logs?${params}`)).data.logs || [];
          } catch (err) {
            if (generation === this.generation && err.status !== 404) {
              this.error = `Could not load logs: ${err.message}`;
            }
            return;
          }
          if (generation !== this.generation || logGeneration !== this.logGeneration) return;
          // Two polls may overlap (a level change during a tick): ids make it idempotent.
          const fresh = lines.filter((line) => line.id > this.lastLogId);
          if (fresh.length) {
            this.lastLogId = Math.max(...fresh.map((line) => line.id));
            const all = this.logs.concat(fresh);
            this.logs = all.length > MAX_LOG_LINES ? all.slice(-MAX_LOG_LINES) : all;
            if (this.follow) this.$nextTick(() => this.scrollLogs());
          }
          if (lines.length < LOG_LIMIT) return;
        }
      },

      scrollLogs() {
        const box = this.$refs.logs || document.getElementById('modal-logs');
        if (this.follow && box) box.scrollTop = box.scrollHeight;
      },
      /** Scrolling up in the log stops following it; back at the bottom resumes. */
      logScrolled() {
        const box = this.$refs.logs;
        if (!box) return;
        const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
        if (this.follow !== atBottom && this.logs.length) this.follow = atBottom;
      },

      act(kind) {
        return this.job ? runAction(kind, this.job) : false;
      },
      openParent() {
        if (this.job && this.job.parent_id) this.open(this.job.parent_id);
      },

      // -- what the template reads about the open job
      title() {
        if (this.job) return `#${this.job.id} ${format.label(this.job)}`;
        return this.jobId === null ? '' : `Job #${this.jobId}`;
      },
      loading() {
        return !this.job && !this.error;
      },
      hasTrail() {
        return this.trail.length > 1;
      },
      crumbText(crumb) {
        const text = `#${crumb.id} ${crumb.label}`;
        return text.length > 40 ? text.slice(0, 39) + '…' : text;
      },
      crumbCurrent(crumb) {
        return crumb.id === this.jobId ? 'page' : null;
      },
      parentText() {
        return this.job && this.job.parent_id ? `#${this.job.parent_id}` : '';
      },
      rootText() {
        return `#${this.job.root_id}`;
      },
      attemptsText() {
        return `${this.job.attempts} / ${this.job.max_attempts}`;
      },
      orDash(value) {
        return value === null || value === undefined || value === '' ? '—' : String(value);
      },
      /** How long the job waited in the queue before its (last) start. */
      waitedText() {
        const job = this.job;
        if (!job.started_at) return '—';
        return format.fmtDuration(Math.max(0, (Date.parse(job.started_at) - Date.parse(job.created_at)) / 1000));
      },
      pausedText() {
        return this.job.paused ? 'yes (pending jobs held back)' : 'no';
      },
      /** The payload URL as a link target, only when it is plain http(s). */
      safeUrl() {
        const url = this.job && this.job.payload && this.job.payload.url;
        return typeof url === 'string' && /^https?:\/\//i.test(url) ? url : '';
      },
      rawUrl() {
        const url = this.job && this.job.payload && this.job.payload.url;
        return url === undefined || url === null ? '—' : String(url);
      },
      countText(status) {
        return `${status} ${this.count(this.job, status)}`;
      },
      totalText() {
        return String(this.count(this.job, 'total'));
      },
      payloadJson() {
        return format.json(this.job.payload);
      },
      resultJson() {
        return format.json(this.job.result);
      },
    }));
  });
})();
