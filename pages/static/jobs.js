// Alpine components for the quaero jobs page (pages/jobs.html).
//
// The server renders a complete first page; these components take it over:
//   jobsPage  - status counts, the roots table and its paging, refreshed every 2 s
//   newCrawl  - the "New crawl" form (POST /api/jobs, field errors next to inputs)
//   jobModal  - the details dialog: job, children, logs tail, cancel/retry/delete
// They talk through window events ("open-job", "jobs-changed") and the "flash" store.
// Everything from the API is shown with x-text, never as HTML: crawled titles and
// URLs are hostile. No inline handlers beyond short expressions, so a later move to
// Alpine's CSP build stays easy.
'use strict';

(() => {
  const POLL_MS = 2000;
  const CHILDREN_LIMIT = 20;
  const LOG_LIMIT = 200;
  const LOG_PAGES_PER_TICK = 5;   // catch up at most 1000 lines per poll
  const MAX_LOG_LINES = 5000;     // keep the DOM small on chatty jobs
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

  /** Call the JSON API; resolve to the body, or reject with an ApiError. */
  async function api(method, path, body) {
    const options = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
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
    return data;
  }

  /** "a=1&b=x" from an object, leaving out empty values. */
  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== '' && value !== null && value !== undefined) search.set(key, String(value));
    }
    return search.toString();
  }

  /** Run fn every ms while the tab is visible, never two at once; again on becoming visible. */
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
      return job.name || (job.payload && job.payload.url) || '(unnamed)';
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
    count(job, status) {
      return (job.counts && job.counts[status]) || 0;
    },
    doneText(job) {
      const c = job.counts || {};
      const done = (c.completed || 0) + (c.failed || 0) + (c.cancelled || 0);
      return `${done}/${c.total || 0} (${c.failed || 0} failed)`;
    },
    json(value) {
      return JSON.stringify(value === undefined ? null : value, null, 2);
    },
    canCancel(job) {
      return ACTIVE.includes(job.status);
    },
    canDelete(job) {
      return FINISHED.includes(job.status);
    },
    canRetry(job) {
      return job.status === 'failed' || job.status === 'cancelled'
        || (job.status === 'completed' && format.count(job, 'failed') > 0);
    },
  };

  const ACTION_TEXT = {
    cancel: ['Cancel job %s and every unfinished job under it?', 'Cancelled job %s.'],
    retry: ['Retry job %s (or its failed descendants)?', 'Retrying job %s.'],
    delete: ['Delete job %s with all its descendants and logs? This cannot be undone.', 'Deleted job %s.'],
  };

  /** Confirm, run cancel/retry/delete on a job, report it; true when it was done. */
  async function runAction(kind, job) {
    const [question, done] = ACTION_TEXT[kind];
    const name = `#${job.id}`;
    if (!window.confirm(question.replace('%s', `${name} (${format.label(job)})`))) return false;
    try {
      if (kind === 'delete') await api('DELETE', `/jobs/${job.id}`);
      else await api('POST', `/jobs/${job.id}/${kind}`, {});
    } catch (err) {
      flash(`Could not ${kind} job ${name}: ${err.message}`, 'error');
      emit('jobs-changed', { id: job.id, action: 'refresh' });
      return false;
    }
    flash(done.replace('%s', name), 'ok');
    emit('jobs-changed', { id: job.id, action: kind });
    return true;
  }

  /** Put ?job=ID into the address bar (or take it out) without a navigation. */
  function setJobInUrl(id) {
    const url = new URL(window.location.href);
    if (id === null) url.searchParams.delete('job');
    else url.searchParams.set('job', String(id));
    window.history.replaceState(window.history.state, '', url);
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
        this.timer = setTimeout(() => this.clear(), kind === 'error' ? 12000 : 5000);
      },
      clear() {
        this.text = '';
      },
    });

    // ---- the roots table, counts and paging -------------------------------------

    Alpine.data('jobsPage', () => ({
      ...format,
      jobs: [],
      total: 0,
      filters: {},
      stats: { counts: {} },
      refreshError: '',
      requested: 0,   // sequence number of the last refresh sent ...
      applied: 0,     // ... and of the last one shown, so a slow answer never wins
      jobsJson: '',

      init() {
        const initial = initialState();
        this.jobs = initial.jobs || [];
        this.jobsJson = JSON.stringify(this.jobs);
        this.total = initial.total || 0;
        this.filters = initial.filters || {};
        this.stats = initial.stats || { counts: {} };
        // The x-for rows take over from the server-rendered ones: one copy only.
        const serverRows = this.$el.querySelector('[data-server-rows]');
        if (serverRows) serverRows.remove();
        window.addEventListener('jobs-changed', () => this.refresh());
        poll(() => this.refresh(), POLL_MS);
      },

      async refresh() {
        const seq = ++this.requested;
        const f = this.filters;
        try {
          const [list, stats] = await Promise.all([
            api('GET', '/jobs?' + query({ status: f.status, type: f.type, q: f.q, limit: f.limit, offset: f.offset })),
            api('GET', '/stats'),
          ]);
          if (seq < this.applied) return;
          this.applied = seq;
          // Replace rows only when something changed: keeps text selections and focus.
          const json = JSON.stringify(list.jobs);
          if (json !== this.jobsJson) {
            this.jobsJson = json;
            this.jobs = list.jobs;
          }
          this.total = list.total;
          this.stats = stats;
          this.refreshError = '';
        } catch (err) {
          this.refreshError = `Auto-refresh failed: ${err.message}. Retrying…`;
        }
      },

      countOf(status) {
        return (this.stats.counts && this.stats.counts[status]) || 0;
      },
      jobHref(id) {
        const params = new URLSearchParams(window.location.search);
        params.set('job', String(id));
        return '?' + params.toString();
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

      async submit(event) {
        const form = event.target;
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
      jobJson: '',
      error: '',
      gone: false,          // 404: stop polling a deleted job
      trail: [],            // [{id, label}] from the root down to the open job
      children: [],
      childrenJson: '',
      childrenTotal: 0,
      childOffset: 0,
      childStatus: '',
      logs: [],
      lastLogId: 0,
      logLevel: 'debug',
      follow: true,
      generation: 0,        // bumped when the open job changes: late answers are dropped
      logGeneration: 0,     // bumped when the log is reset
      returnFocus: null,

      init() {
        this.statuses = initialState().statuses || [];
        window.addEventListener('open-job', (event) => this.open(event.detail.id));
        window.addEventListener('jobs-changed', (event) => this.onJobsChanged(event.detail || {}));
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
          this.jobJson = '';
          this.error = '';
          this.gone = false;
          this.children = [];
          this.childrenJson = '';
          this.childrenTotal = 0;
          this.childOffset = 0;
          this.childStatus = '';
          this.clearLogs();
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

      async refresh() {
        if (!this.isOpen || this.jobId === null || this.gone) return;
        await Promise.all([this.loadJob(), this.loadChildren(), this.loadLogs()]);
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
          const job = await api('GET', `/jobs/${id}`);
          if (generation !== this.generation) return;
          const json = JSON.stringify(job);
          if (json !== this.jobJson) {
            this.jobJson = json;
            this.job = job;
          }
          this.error = '';
          await this.updateTrail(job, generation);
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
          this.trail = [...this.trail.slice(0, at), crumb];
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

      async loadChildren() {
        const generation = this.generation;
        const params = query({ limit: CHILDREN_LIMIT, offset: this.childOffset, status: this.childStatus });
        try {
          const page = await api('GET', `/jobs/${this.jobId}/children?${params}`);
          if (generation !== this.generation) return;
          const json = JSON.stringify(page.jobs);
          if (json !== this.childrenJson) {
            this.childrenJson = json;
            this.children = page.jobs;
          }
          this.childrenTotal = page.total;
        } catch (err) {
          if (generation === this.generation && err.status !== 404) {
            this.error = `Could not load children: ${err.message}`;
          }
        }
      },

      reloadChildren() {
        this.childOffset = 0;
        return this.loadChildren();
      },
      childPage(step) {
        this.childOffset = Math.max(0, this.childOffset + step * CHILDREN_LIMIT);
        return this.loadChildren();
      },
      childHasPrev() {
        return this.childOffset > 0;
      },
      childHasNext() {
        return this.childOffset + CHILDREN_LIMIT < this.childrenTotal;
      },
      childRangeText() {
        if (!this.childrenTotal) return 'none';
        const last = this.childOffset + this.children.length;
        return `${this.childOffset + 1}–${last} of ${this.childrenTotal}`;
      },
      childProgress(child) {
        return this.count(child, 'total') ? `${this.pct(child)}% · ${this.doneText(child)}` : `${this.pct(child)}%`;
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

      /** Append lines after the last one seen (tail -f by polling). */
      async loadLogs() {
        const generation = this.generation;
        const logGeneration = this.logGeneration;
        for (let page = 0; page < LOG_PAGES_PER_TICK; page++) {
          let lines;
          try {
            const params = query({ after_id: this.lastLogId, limit: LOG_LIMIT, level: this.logLevel });
            lines = (await api('GET', `/jobs/${this.jobId}/logs?${params}`)).logs || [];
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

      act(kind) {
        return this.job ? runAction(kind, this.job) : false;
      },

      title() {
        if (this.job) return `#${this.job.id} ${format.label(this.job)}`;
        return this.jobId === null ? '' : `Job #${this.jobId}`;
      },
      crumbText(crumb) {
        const text = `#${crumb.id} ${crumb.label}`;
        return text.length > 40 ? text.slice(0, 39) + '…' : text;
      },
      /** The payload URL as a link target, only when it is plain http(s). */
      safeUrl(job) {
        const url = job.payload && job.payload.url;
        return typeof url === 'string' && /^https?:\/\//i.test(url) ? url : '';
      },
    }));
  });
})();
