// Drives one browser player through the openams playback acceptance scenario:
//   load the manifest -> play muted until currentTime >= `seconds` -> force the lowest rung and
//   play on -> force the highest rung and play on.
// Every player is wrapped in the same small adapter (rungs / current / force) so the scenario and
// the checks are identical for hls.js, dash.js (+ its Smooth Streaming plugin) and shaka-player.
// The Python side (tests/support/players.py) calls harness.run(options), waits for state.done and
// reads harness.snapshot(). Nothing here decides pass/fail beyond recording facts; the test does.
'use strict';

(function () {
  const LIBS = {
    'hls.js': ['/node_modules/hls.js/dist/hls.min.js'],
    'dash.js': ['/node_modules/dashjs/dist/modern/umd/dash.all.min.js'],
    'dash.js-mss': [
      '/node_modules/dashjs/dist/modern/umd/dash.all.min.js',
      '/node_modules/dashjs/dist/modern/umd/dash.mss.min.js',
    ],
    'shaka': ['/node_modules/shaka-player/dist/shaka-player.compiled.js'],
  };

  const video = document.getElementById('video');
  const statusBox = document.getElementById('status');
  const started = performance.now();

  const state = {
    phase: 'idle',
    done: false,
    fatal: false,
    timedOut: false, // the scenario ran out of its time budget
    player: null,
    version: null,
    currentTime: 0,
    maxTime: 0, // highest currentTime seen (the switch phase may seek back)
    duration: null,
    played: 0, // media seconds actually advanced while playing (seeks excluded)
    rungs: [], // [{index, bandwidth, width, height}], ascending bandwidth
    renderedSizes: [], // ['WxH', ...] in order of first presentation
    reported: [], // rung indices the player said it switched to / rendered
    switches: [],
    droppedFrames: 0,
    totalFrames: 0,
    errors: [],
    warnings: [],
    log: [],
  };

  let adapter = null;
  let deadline = Infinity;
  let runStart = 0;

  function clock() {
    return (performance.now() - started) / 1000;
  }

  function note(msg) {
    state.log.push(`[${clock().toFixed(2)}s t=${video.currentTime.toFixed(2)}] ${msg}`);
    statusBox.textContent = state.log.slice(-20).join('\n');
  }

  function fail(msg, fatal = true) {
    state.errors.push(msg);
    if (fatal) state.fatal = true;
    note(`ERROR ${msg}`);
  }

  // Records why a wait failed, unless a player error already explains it.
  function giveUp(what, fatal = true) {
    if (state.fatal) return;
    fail(state.timedOut ? `timed out after ${(deadline - runStart).toFixed(1)}s ${what}` : what, fatal);
  }

  function warn(msg) {
    state.warnings.push(msg);
    note(`warning ${msg}`);
  }

  function describe(err) {
    if (err === null || err === undefined) return String(err);
    if (err instanceof Error) return `${err.name}: ${err.message}`;
    try {
      return JSON.stringify(err).slice(0, 500);
    } catch (_e) {
      return String(err);
    }
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // Waits until cond() is true; false on timeout, on the global deadline or after a fatal error.
  async function until(cond, seconds) {
    const end = Math.min(clock() + seconds, deadline);
    for (;;) {
      let ok = false;
      try {
        ok = cond();
      } catch (_e) {
        ok = false;
      }
      if (ok) return true;
      if (clock() >= deadline) state.timedOut = true;
      if (state.fatal || clock() >= end) return false;
      await sleep(50);
    }
  }

  function loadScript(url) {
    return new Promise((resolve, reject) => {
      const el = document.createElement('script');
      el.src = url;
      el.onload = () => resolve();
      el.onerror = () => reject(new Error(`cannot load ${url} (is node_modules installed? run scripts/players.sh)`));
      document.head.appendChild(el);
    });
  }

  function recordSize(w, h) {
    if (!w || !h) return;
    const key = `${w}x${h}`;
    if (!state.renderedSizes.includes(key)) {
      state.renderedSizes.push(key);
      note(`rendering ${key}`);
    }
  }

  function report(index) {
    if (index === null || index === undefined || index < 0) return;
    if (!state.reported.includes(index)) state.reported.push(index);
  }

  // Media element observation, common to all players.
  function watchVideo() {
    let last = null;
    video.addEventListener('error', () => {
      const e = video.error;
      fail(`MediaError ${e ? e.code : '?'}: ${e && e.message ? e.message : 'no message'}`);
    });
    video.addEventListener('resize', () => recordSize(video.videoWidth, video.videoHeight));
    video.addEventListener('seeking', () => {
      last = null;
    });
    video.addEventListener('ended', () => note('ended'));
    if (video.requestVideoFrameCallback) {
      const onFrame = (_now, meta) => {
        recordSize(meta.width, meta.height);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
    setInterval(() => {
      state.currentTime = video.currentTime;
      state.maxTime = Math.max(state.maxTime, video.currentTime);
      state.duration = Number.isFinite(video.duration) ? video.duration : null;
      if (video.paused || video.seeking) {
        last = null;
        return;
      }
      const t = video.currentTime;
      if (last !== null && t > last && t - last < 1) state.played += t - last;
      last = t;
    }, 100);
  }

  function startPlayback() {
    const p = video.play();
    if (p && p.catch) {
      p.catch((e) => {
        // AbortError: play() interrupted by a pause()/load the player itself issued — benign
        if (e && e.name === 'AbortError') warn(`video.play() aborted: ${describe(e)}`);
        else fail(`video.play() rejected: ${describe(e)}`);
      });
    }
  }

  // Exceptions nobody caught (in a player or in this page) are errors, but the scenario goes on.
  window.addEventListener('error', (e) => {
    fail(`uncaught ${e.message} (${e.filename}:${e.lineno})`, false);
  });
  window.addEventListener('unhandledrejection', (e) => {
    fail(`unhandled rejection: ${describe(e.reason)}`, false);
  });

  // ---- player adapters ------------------------------------------------------------------------
  // Each returns {version, rungs(), current(), force(index), destroy()}; rung indices are whatever
  // the player's own selection API takes.

  function hlsAdapter(src, _mime, keyToken) {
    const Hls = window.Hls;
    if (!Hls || !Hls.isSupported()) throw new Error('hls.js reports MediaSource is not supported');
    const config = { debug: false, enableWorker: true, capLevelToPlayerSize: false };
    if (keyToken) {
      // the way AMS players send a viewer token: a header on the key request only
      config.xhrSetup = (xhr, url) => {
        if (url.includes('/keydelivery')) xhr.setRequestHeader('Authorization', `Bearer ${keyToken}`);
      };
    }
    const hls = new Hls(config);
    hls.on(Hls.Events.ERROR, (_ev, d) => {
      const where = d.url || (d.frag && d.frag.url) || (d.context && d.context.url) || '';
      const why = (d.error && d.error.message) || d.reason || (d.response && `HTTP ${d.response.code}`) || '';
      const msg = `hls.js ${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}: ${why} ${where}`.trim();
      if (d.fatal) fail(msg);
      else warn(msg);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => startPlayback());
    hls.on(Hls.Events.LEVEL_SWITCHED, (_ev, d) => report(d.level));
    hls.loadSource(src);
    hls.attachMedia(video);
    return {
      version: Hls.version,
      rungs: () =>
        hls.levels.map((l, i) => ({ index: i, bandwidth: l.bitrate || 0, width: l.width || 0, height: l.height || 0 })),
      current: () => hls.currentLevel,
      force: (i) => {
        hls.currentLevel = i; // immediate switch: flushes the forward buffer, disables ABR
      },
      destroy: () => hls.destroy(),
    };
  }

  function dashAdapter(src) {
    const dashjs = window.dashjs;
    if (!dashjs || !dashjs.MediaPlayer) throw new Error('dash.js did not load');
    const player = dashjs.MediaPlayer().create();
    const events = dashjs.MediaPlayer.events;
    player.on(events.ERROR, (e) => {
      const err = e.error || {};
      fail(`dash.js error ${err.code !== undefined ? err.code : ''}: ${err.message || describe(err)}`);
    });
    player.on(events.PLAYBACK_ERROR, (e) => fail(`dash.js playback error: ${describe(e.error)}`));
    let kind = 'video';
    const reps = () => {
      try {
        let list = player.getRepresentationsByType('video') || [];
        kind = 'video';
        if (!list.length) {
          list = player.getRepresentationsByType('audio') || [];
          kind = 'audio';
        }
        return list;
      } catch (_e) {
        return [];
      }
    };
    player.on(events.QUALITY_CHANGE_RENDERED, (e) => {
      if (e.mediaType === kind && e.newRepresentation) report(reps().findIndex((r) => r.id === e.newRepresentation.id));
    });
    player.initialize(video, src, true);
    return {
      version: player.getVersion ? player.getVersion() : null,
      rungs: () =>
        reps().map((r, i) => ({ index: i, bandwidth: r.bandwidth || 0, width: r.width || 0, height: r.height || 0 })),
      current: () => {
        const cur = player.getCurrentRepresentationForType(kind);
        return cur ? reps().findIndex((r) => r.id === cur.id) : -1;
      },
      force: (i) => {
        player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { [kind]: false } } } });
        player.setRepresentationForTypeByIndex(kind, i, true);
      },
      destroy: () => player.destroy(),
    };
  }

  function shakaAdapter(src, mime) {
    const shaka = window.shaka;
    if (!shaka) throw new Error('shaka-player did not load');
    shaka.polyfill.installAll();
    if (!shaka.Player.isBrowserSupported()) throw new Error('shaka-player says this browser is not supported');
    const player = new shaka.Player();
    // Shaka 5 bans the current video stream for 30 s when > 15 % of frames drop over 2 s. On a
    // loaded CI machine that is about the machine, not the stream, and a banned rung disappears
    // from the track list and cannot be forced: judge the stream, not the CPU.
    player.configure('abr.droppedFrames', false);
    const describeShaka = (d) =>
      `shaka error ${d.code} (category ${d.category}, severity ${d.severity}) ${describe(d.data).slice(0, 300)}`;
    player.addEventListener('error', (e) => {
      const d = e.detail || {};
      if (d.severity === 1) warn(describeShaka(d));
      else fail(describeShaka(d));
    });
    const activeId = () => {
      const t = player.getVariantTracks().find((v) => v.active);
      return t ? t.id : -1;
    };
    player.addEventListener('adaptation', () => report(activeId()));
    player.addEventListener('variantchanged', () => report(activeId()));
    player
      .attach(video)
      .then(() => player.load(src, null, mime || undefined))
      .then(() => startPlayback())
      .catch((e) => fail(e && e.code !== undefined ? describeShaka(e) : `shaka load failed: ${describe(e)}`));
    return {
      version: shaka.Player.version,
      rungs: () =>
        player
          .getVariantTracks()
          .map((t) => ({ index: t.id, bandwidth: t.bandwidth || 0, width: t.width || 0, height: t.height || 0 })),
      current: activeId,
      force: (id) => {
        player.configure('abr.enabled', false);
        const track = player.getVariantTracks().find((t) => t.id === id);
        if (!track) throw new Error(`shaka has no variant track ${id}`);
        player.selectVariantTrack(track, true);
      },
      destroy: () => player.destroy(),
    };
  }

  const ADAPTERS = { 'hls.js': hlsAdapter, 'dash.js': dashAdapter, 'dash.js-mss': dashAdapter, shaka: shakaAdapter };

  // ---- the scenario ---------------------------------------------------------------------------

  // Does what is on screen show `rung`? By frame height when that identifies the rung (it does for
  // any sane ladder), else by what the player reports as current (audio-only, equal heights).
  function showing(rung) {
    const sameHeight = state.rungs.filter((r) => r.height === rung.height).length;
    if (rung.height > 0 && sameHeight === 1) return video.videoHeight === rung.height;
    return adapter.current() === rung.index;
  }

  async function playFor(seconds, limit) {
    const from = video.currentTime;
    await until(() => video.currentTime >= from + seconds || video.ended, limit);
    return video.currentTime - from;
  }

  // On a short VOD, seek back when fewer than `need` seconds are left to play.
  async function makeRoom(need) {
    if (!Number.isFinite(video.duration) || video.duration - video.currentTime >= need) return;
    const to = Math.max(0, Math.min(1, video.duration - need));
    state.phase = `seeking back to ${to}s`;
    note(`only ${(video.duration - video.currentTime).toFixed(2)}s left, seeking back to ${to}s`);
    video.currentTime = to;
    await until(() => !video.seeking && video.currentTime < to + 2, 15);
  }

  async function switchTo(label, rung, opts) {
    // room to show the new rung and play on (a repeated request below may have used it up)
    await makeRoom(opts.switchSeconds + 4);
    state.phase = `switching to the ${label} rung`;
    note(`forcing ${label} rung ${JSON.stringify(rung)}`);
    const t0 = clock();
    try {
      adapter.force(rung.index);
    } catch (e) {
      fail(`forcing the ${label} rung failed: ${describe(e)}`);
    }
    // A player may drop a forced switch issued in an awkward state (hls.js right after a seek back
    // over a fully buffered, ended stream keeps playing the old buffer). A viewer would ask again:
    // so does the harness, once, half-way, with a seek to where it is so the buffer is re-checked.
    // A rung that cannot be loaded still fails: the retry only repeats the request.
    let matched = await until(() => showing(rung), opts.switchTimeout / 2);
    let retried = false;
    if (!matched && !state.fatal) {
      retried = true;
      warn(`the ${label} rung is not showing after ${(opts.switchTimeout / 2).toFixed(1)}s: forcing it again`);
      try {
        adapter.force(rung.index);
        video.currentTime = video.currentTime;
      } catch (e) {
        fail(`forcing the ${label} rung again failed: ${describe(e)}`);
      }
      matched = await until(() => showing(rung), opts.switchTimeout / 2);
    }
    const latency = clock() - t0;
    const at = video.currentTime;
    const advanced = matched ? await playFor(opts.switchSeconds, opts.switchSeconds * 3 + 5) : 0;
    const record = {
      target: label,
      rung,
      ok: matched && advanced >= opts.switchSeconds * 0.9,
      matched,
      retried,
      latency,
      at,
      advanced,
      size: [video.videoWidth, video.videoHeight],
      current: adapter.current(),
    };
    state.switches.push(record);
    // not fatal: still try the other switch, its outcome helps to tell what is wrong
    if (!record.ok) giveUp(`switching to the ${label} rung ${JSON.stringify(rung)}`, false);
    note(`switch to ${label}: ${JSON.stringify(record)}`);
  }

  async function run(opts) {
    runStart = clock();
    deadline = runStart + opts.timeout;
    state.player = opts.player;
    try {
      state.phase = 'loading the player library';
      const libs = LIBS[opts.player];
      if (!libs) throw new Error(`unknown player ${opts.player}`);
      for (const url of libs) await loadScript(url);
      watchVideo();
      video.muted = true;
      state.phase = 'loading the manifest';
      adapter = ADAPTERS[opts.player](opts.src, opts.mime, opts.keyToken || '');
      state.version = adapter.version || null;
      note(`${opts.player} ${state.version} <- ${opts.src}`);
      if (!(await until(() => adapter.rungs().length > 0, opts.timeout))) {
        giveUp('waiting for the player to list its rungs');
        return;
      }
      state.rungs = adapter.rungs().sort((a, b) => a.bandwidth - b.bandwidth);
      note(`rungs ${JSON.stringify(state.rungs)}`);
      report(adapter.current());

      state.phase = `playing to ${opts.seconds}s`;
      const reached = () => {
        state.maxTime = Math.max(state.maxTime, video.currentTime);
        return video.currentTime >= opts.seconds;
      };
      if (!(await until(reached, opts.timeout))) {
        giveUp(`playing to ${opts.seconds}s: stuck at ${video.currentTime.toFixed(2)}s`);
        return;
      }
      // A player may drop rungs once playing (codecs filtered after probing, streams banned after
      // errors): say so, and force only rungs it still offers.
      const now = adapter.rungs().sort((a, b) => a.bandwidth - b.bandwidth);
      const gone = state.rungs.filter((r) => !now.some((n) => n.index === r.index && n.bandwidth === r.bandwidth));
      if (gone.length) warn(`the player no longer offers ${JSON.stringify(gone)}`);
      if (!opts.switch || now.length === 0) return;

      // Two switches each need room to show the new rung and play on: on a short VOD go back.
      await makeRoom(2 * (opts.switchSeconds + 4));
      const lowest = now[0];
      const highest = now[now.length - 1];
      await switchTo('lowest', lowest, opts);
      if (!state.fatal) await switchTo('highest', highest, opts);
    } catch (e) {
      fail(`harness: ${describe(e)}`);
    } finally {
      state.currentTime = video.currentTime;
      state.phase = `done (${state.phase})`;
      state.done = true;
      note(state.phase);
    }
  }

  function snapshot() {
    if (video.getVideoPlaybackQuality) {
      const q = video.getVideoPlaybackQuality();
      state.droppedFrames = q.droppedVideoFrames;
      state.totalFrames = q.totalVideoFrames;
    }
    state.currentTime = video.currentTime;
    state.maxTime = Math.max(state.maxTime, video.currentTime);
    state.duration = Number.isFinite(video.duration) ? video.duration : null;
    return JSON.parse(JSON.stringify(state));
  }

  window.harness = { run, snapshot, state };
})();
