// torrentdrive's page: everything goes through the JSON API under /api/v1/, signed in
// with the session cookie; changes carry the session's CSRF token.
'use strict';

const API = '/api/v1';
const POLL_MS = 1500;
const VIDEO = /\.(mp4|m4v|webm|mkv|mov|ogv)$/i;
const AUDIO = /\.(mp3|m4a|aac|oga|ogg|opus|flac|wav)$/i;

let csrf = null;
let cwd = '/';
let pollTimer = null;
let ticks = 0;

const $ = (id) => document.getElementById(id);

// ---- helpers -------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function size(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return '';
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
}

function joinPath(dir, name) {
  return (dir === '/' ? '' : dir) + '/' + name;
}

function contentUrl(path, download) {
  return `${API}/files/content?path=${encodeURIComponent(path)}${download ? '&download=1' : ''}`;
}

let sayTimer = null;

function say(text) {
  $('status').textContent = text;
  clearTimeout(sayTimer);
  if (text) sayTimer = setTimeout(() => { $('status').textContent = ''; }, 8000);
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD' && csrf) init.headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) {
    if (body instanceof Blob || typeof body === 'string') {
      init.body = body;
    } else {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
  }
  const res = await fetch(API + path, init);
  let data = null;
  if ((res.headers.get('Content-Type') || '').startsWith('application/json')) data = await res.json();
  if (!res.ok) {
    const e = (data && data.error) || { code: 'http_' + res.status, message: res.statusText };
    if (res.status === 401 && csrf) signedOut('Your session has ended: sign in again.');
    throw new ApiError(res.status, e.code, e.message);
  }
  return data;
}

function failed(e) {
  say(e.message || String(e));
}

// A modal question: resolves to the text typed (or '' without an input), null on cancel.
function ask({ title, text = '', label = '', value = null, ok = 'OK', danger = false }) {
  const dialog = $('ask');
  $('ask-title').textContent = title;
  $('ask-text').textContent = text;
  const input = $('ask-input');
  const hasInput = value !== null;
  $('ask-label').textContent = label;
  $('ask-label').hidden = !hasInput;
  input.hidden = !hasInput;
  input.value = hasInput ? value : '';
  input.required = hasInput;
  $('ask-ok').textContent = ok;
  $('ask-ok').className = danger ? 'danger' : '';
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.removeEventListener('close', onClose);
      resolve(answer);
    };
    const onClose = () => done(dialog.returnValue === 'ok' ? input.value : null);
    dialog.addEventListener('close', onClose);
    dialog.returnValue = '';
    dialog.showModal();
    if (hasInput) {
      input.focus();
      const dot = input.value.lastIndexOf('.');
      input.setSelectionRange(0, dot > 0 ? dot : input.value.length);
    } else {
      $('ask-cancel').focus();
    }
  });
}
$('ask-cancel').addEventListener('click', () => $('ask').close(''));

// ---- signing in and out --------------------------------------------------------------

function signedIn(session) {
  csrf = session.csrf;
  $('who').textContent = session.user;
  $('sign-in-view').hidden = true;
  $('drive-view').hidden = false;
  $('account').hidden = false;
  navigate();
  refreshTransfers();
  refreshAccount();
  clearInterval(pollTimer);
  pollTimer = setInterval(poll, POLL_MS);
}

function signedOut(message) {
  csrf = null;
  shownTransfers = '';
  shownFolder = '';
  clearInterval(pollTimer);
  closePlayer();
  $('drive-view').hidden = true;
  $('account').hidden = true;
  $('sign-in-view').hidden = false;
  $('sign-in-error').textContent = message || '';
  $('password').value = '';
  $('user').focus();
}

$('sign-in').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('sign-in-error').textContent = '';
  try {
    const session = await api('POST', '/session', { user: $('user').value, password: $('password').value });
    signedIn(session);
    say('');
  } catch (e) {
    $('sign-in-error').textContent = e.message;
  }
});

$('sign-out').addEventListener('click', async () => {
  try { await api('DELETE', '/session'); } catch (e) { /* signed out either way */ }
  signedOut('Signed out.');
});

// ---- account -------------------------------------------------------------------------

async function refreshAccount() {
  const a = await api('GET', '/account');
  const meter = $('usage');
  if (a.quota) {
    $('usage-text').textContent = `${size(a.used)} of ${size(a.quota)} used`;
    meter.hidden = false;
    meter.max = a.quota;
    meter.value = a.used;
    meter.high = a.quota * 0.9;
  } else {
    $('usage-text').textContent = `${size(a.used)} used`;
    meter.hidden = true;
  }
}

// ---- transfers -----------------------------------------------------------------------

function poll() {
  if (document.hidden) return;
  ticks++;
  refreshTransfers().catch(() => {});
  if (ticks % 4 === 0) {
    refreshAccount().catch(() => {});
    refreshFolder(false).catch(() => {});
  }
}

// Failed drops: `/Add/NAME.error.txt` beside the dropped file says why.
async function failedDrops() {
  const add = await api('GET', '/files?path=' + encodeURIComponent('/Add'));
  const errors = add.entries.filter((e) => e.type === 'file' && e.name.endsWith('.error.txt'));
  return Promise.all(errors.map(async (e) => {
    const res = await fetch(contentUrl(e.path), { credentials: 'same-origin' });
    const reason = res.ok ? (await res.text()).trim() : 'could not be taken';
    return { name: e.name.slice(0, -'.error.txt'.length), errorPath: e.path, reason };
  }));
}

function transferItem(t) {
  const li = el('li', { 'data-id': t.id, 'data-state': t.state });
  const done = t.state === 'seeding' || t.state === 'completed';
  const progress = el('progress', { max: '100', value: String(t.progress), 'aria-label': `Progress of ${t.name}` });
  const figures = el('div', { class: 't-figures' },
    el('span', { class: 'pct', text: `${t.progress.toFixed(1)} %` }),
    el('span', { text: t.size ? `${size(t.downloaded)} of ${size(t.size)}` : '' }),
    el('span', { text: t.down_bps ? `↓ ${size(t.down_bps)}/s` : '' }),
    el('span', { text: t.up_bps ? `↑ ${size(t.up_bps)}/s` : '' }),
    el('span', { text: t.eta_secs ? `${duration(t.eta_secs)} left` : '' }),
    el('span', { text: t.id ? `${t.peers} peer${t.peers === 1 ? '' : 's'}` : '' }));
  const actions = el('span');
  if (t.id || t.drop) {
    actions.append(el('button', {
      type: 'button',
      text: done ? 'Remove' : 'Cancel',
      'aria-label': `${done ? 'Remove' : 'Cancel'} ${t.name}`,
      onclick: () => removeTransfer(t, done),
    }));
  }
  li.append(
    el('div', { class: 't-head' },
      el('span', { class: 't-name', text: t.name }),
      el('span', { class: 'state', text: t.state }),
      actions),
    progress, figures);
  if (t.error) li.append(el('div', { class: 't-error', text: t.error }));
  return li;
}

function failedItem(f) {
  return el('li', { 'data-state': 'failed' },
    el('div', { class: 't-head' },
      el('span', { class: 't-name', text: f.name }),
      el('span', { class: 'state', text: 'failed' }),
      el('button', {
        type: 'button', text: 'Dismiss', 'aria-label': `Dismiss ${f.name}`,
        onclick: async () => {
          try {
            await api('DELETE', '/files?path=' + encodeURIComponent(f.errorPath));
            await api('DELETE', '/files?path=' + encodeURIComponent(joinPath('/Add', f.name))).catch(() => {});
            refreshTransfers();
          } catch (e) { failed(e); }
        },
      })),
    el('div', { class: 't-error', text: f.reason }));
}

let shownTransfers = '';

async function refreshTransfers() {
  const [{ transfers }, failures] = await Promise.all([api('GET', '/transfers'), failedDrops().catch(() => [])]);
  // Redrawn only when something changed, so a button isn't replaced under the pointer.
  const now = JSON.stringify([transfers, failures]);
  if (now === shownTransfers) return;
  shownTransfers = now;
  const list = $('transfer-list');
  const focused = document.activeElement && document.activeElement.getAttribute('aria-label');
  list.replaceChildren(...transfers.map(transferItem), ...failures.map(failedItem));
  // Rebuilt every poll: keep the keyboard where it was.
  if (focused && list.contains(document.activeElement) === false) {
    const again = [...list.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focused);
    if (again) again.focus();
  }
  $('no-transfers').hidden = transfers.length + failures.length > 0;
}

async function removeTransfer(t, done) {
  const verb = done ? 'Remove' : 'Cancel';
  const sure = await ask({
    title: `${verb} “${t.name}”?`,
    text: t.id ? 'Its files are deleted from your drive.' : 'Nothing has been downloaded yet.',
    ok: verb, danger: true,
  });
  if (sure === null) return;
  try {
    // A link still fetching metadata has no files yet: deleting its drop cancels it.
    if (t.id) await api('DELETE', '/transfers/' + t.id);
    else await api('DELETE', '/files?path=' + encodeURIComponent(t.drop));
    say(`${t.name}: ${done ? 'removed' : 'cancelled'}.`);
    refreshTransfers();
    refreshFolder(false);
    refreshAccount();
  } catch (e) { failed(e); }
}

$('add-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const link = $('link').value.trim();
  try {
    await api('POST', '/transfers', { link });
    $('link').value = '';
    say('Added: fetching the torrent’s details…');
    refreshTransfers();
  } catch (e) { failed(e); }
});

async function addTorrentFiles(files) {
  for (const f of files) {
    try {
      await api('POST', '/transfers?name=' + encodeURIComponent(f.name), f,
        { 'Content-Type': 'application/x-bittorrent' });
      say(`Added ${f.name}.`);
    } catch (e) { failed(e); }
  }
  refreshTransfers();
}

$('torrent-file').addEventListener('change', (ev) => {
  addTorrentFiles([...ev.target.files]);
  ev.target.value = '';
});

function dropTarget(zone, onFiles) {
  zone.addEventListener('dragover', (ev) => { ev.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('over');
    if (ev.dataTransfer.files.length) onFiles([...ev.dataTransfer.files]);
  });
}
dropTarget($('add'), addTorrentFiles);
dropTarget($('files'), (files) => upload(files));

// ---- files ---------------------------------------------------------------------------

// The folder shown is the URL's fragment (#/Films), so Back and bookmarks work.
function navigate() {
  let path = '/';
  try { path = decodeURIComponent(location.hash.slice(1)) || '/'; } catch (e) { /* bad fragment */ }
  if (!path.startsWith('/')) path = '/' + path;
  cwd = path;
  refreshFolder(true).catch((e) => {
    failed(e);
    if (e.status === 404 && cwd !== '/') location.hash = '#/';
  });
}
window.addEventListener('hashchange', () => { if (csrf) navigate(); });

function folderLink(path) {
  return '#' + encodeURI(path).replace(/#/g, '%23');
}

function crumbs() {
  const parts = cwd.split('/').filter(Boolean);
  const items = [el('li', {}, el('a', { href: '#/', text: 'My drive', 'aria-current': parts.length ? null : 'page' }))];
  parts.forEach((p, i) => {
    const path = '/' + parts.slice(0, i + 1).join('/');
    items.push(el('li', {}, el('a', { href: folderLink(path), text: p, 'aria-current': i === parts.length - 1 ? 'page' : null })));
  });
  $('crumbs').replaceChildren(...items);
}

let shownFolder = '';

async function refreshFolder(moved) {
  const path = cwd;
  const folder = await api('GET', '/files?path=' + encodeURIComponent(path));
  if (path !== cwd) return;
  if (folder.type !== 'folder') { location.hash = folderLink(path.replace(/\/[^/]*$/, '') || '/'); return; }
  const listing = JSON.stringify(folder.entries);
  if (!moved && listing === shownFolder) return;
  shownFolder = listing;
  crumbs();
  const rows = folder.entries
    .sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'folder' ? -1 : 1))
    .map(fileRow);
  $('file-list').replaceChildren(...rows);
  $('empty-folder').hidden = rows.length > 0;
}

function fileRow(e) {
  const isDir = e.type === 'folder';
  const icon = el('span', { class: `kind ${isDir ? 'folder' : 'file'}`, 'aria-hidden': 'true' });
  const name = isDir
    ? el('a', { href: folderLink(e.path) }, icon, e.name)
    : el('span', {}, icon, e.name);
  const acts = el('td', { class: 'acts' });
  if (!isDir && (VIDEO.test(e.name) || AUDIO.test(e.name))) {
    acts.append(el('button', { type: 'button', text: 'Play', 'aria-label': `Play ${e.name}`, onclick: () => play(e) }));
  }
  if (!isDir) {
    acts.append(el('a', { class: 'button', href: contentUrl(e.path, true), download: e.name, text: 'Download', 'aria-label': `Download ${e.name}` }));
  }
  if (!(cwd === '/' && e.name === 'Add' && isDir) && !(cwd === '/Add' && e.name === 'status.txt')) {
    acts.append(
      el('button', { type: 'button', text: 'Rename', 'aria-label': `Rename ${e.name}`, onclick: () => rename(e) }),
      el('button', { type: 'button', text: 'Move', 'aria-label': `Move ${e.name}`, onclick: () => move(e) }),
      el('button', { type: 'button', class: 'danger', text: 'Delete', 'aria-label': `Delete ${e.name}`, onclick: () => remove(e) }));
  }
  const modified = e.modified ? new Date(e.modified * 1000).toLocaleString() : '';
  return el('tr', { 'data-name': e.name },
    el('td', { class: 'name' }, name),
    el('td', { class: 'num', text: isDir ? '' : size(e.size) }),
    el('td', { class: 'opt', text: modified }),
    acts);
}

async function changed(message) {
  say(message);
  await refreshFolder(true);
  refreshAccount().catch(() => {});
}

async function rename(e) {
  const name = await ask({ title: `Rename “${e.name}”`, label: 'New name', value: e.name, ok: 'Rename' });
  if (!name || name === e.name) return;
  try {
    await api('POST', '/files/move', { from: e.path, to: joinPath(cwd, name) });
    await changed(`Renamed to ${name}.`);
  } catch (err) { failed(err); }
}

async function move(e) {
  const dest = await ask({ title: `Move “${e.name}”`, label: 'To folder', value: cwd, ok: 'Move' });
  if (dest === null) return;
  const folder = '/' + dest.split('/').filter(Boolean).join('/');
  try {
    await api('POST', '/files/move', { from: e.path, to: joinPath(folder, e.name) });
    await changed(`Moved ${e.name} to ${folder}.`);
  } catch (err) { failed(err); }
}

async function remove(e) {
  const sure = await ask({
    title: `Delete “${e.name}”?`,
    text: e.type === 'folder' ? 'The folder and everything in it are deleted.' : 'The file is deleted.',
    ok: 'Delete', danger: true,
  });
  if (sure === null) return;
  try {
    await api('DELETE', '/files?path=' + encodeURIComponent(e.path));
    await changed(`Deleted ${e.name}.`);
  } catch (err) { failed(err); }
}

$('new-folder').addEventListener('click', async () => {
  const name = await ask({ title: 'New folder', label: 'Name', value: '', ok: 'Create' });
  if (!name) return;
  try {
    await api('POST', '/files/mkdir', { path: joinPath(cwd, name) });
    await changed(`Created ${name}.`);
  } catch (e) { failed(e); }
});

// One file at a time, with progress (fetch can't report upload progress; XHR can).
function putFile(file, path) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', contentUrl(path));
    xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) say(`Uploading ${file.name}: ${Math.floor((ev.loaded * 100) / ev.total)} %`);
    };
    xhr.onload = () => {
      if (xhr.status < 300) return resolve();
      let msg = xhr.statusText;
      try { msg = JSON.parse(xhr.responseText).error.message; } catch (e) { /* not JSON */ }
      reject(new ApiError(xhr.status, '', `${file.name}: ${msg}`));
    };
    xhr.onerror = () => reject(new Error(`${file.name}: the upload broke off`));
    xhr.send(file);
  });
}

async function upload(files) {
  const dir = cwd;
  let done = 0;
  for (const f of files) {
    try {
      await putFile(f, joinPath(dir, f.name));
      done++;
    } catch (e) { failed(e); return; }
  }
  await changed(`Uploaded ${done} file${done === 1 ? '' : 's'}.`);
}

$('upload-files').addEventListener('change', (ev) => {
  upload([...ev.target.files]);
  ev.target.value = '';
});

// ---- the player ----------------------------------------------------------------------

// The player starts inside the click, so the browser counts the click as permission to
// play; the stream URL for other players follows.
function play(e) {
  const media = el(AUDIO.test(e.name) ? 'audio' : 'video', {
    controls: true, preload: 'auto', src: contentUrl(e.path), 'aria-label': e.name,
  });
  media.addEventListener('error', () => {
    $('player-error').textContent = 'The browser can’t play this format: open it in VLC or mpv.';
  });
  $('player-error').textContent = '';
  const old = $('player-media').firstChild;
  if (old) old.pause();
  $('player-media').replaceChildren(media);
  $('player-title').textContent = `Playing ${e.name}`;
  $('player').hidden = false;
  media.play().catch(() => { /* shown by the error handler, or paused by the browser */ });
  media.focus();
  $('player').scrollIntoView({ block: 'nearest' });
  $('stream-url').value = '';
  api('GET', '/files?path=' + encodeURIComponent(e.path)).then((file) => {
    const url = new URL(file.stream_url, location.href).href;
    $('stream-url').value = url;
    const m3u = `#EXTM3U\n#EXTINF:-1,${e.name}\n${url}\n`;
    const link = $('play-external');
    if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([m3u], { type: 'audio/x-mpegurl' }));
    link.download = e.name.replace(/\.[^.]*$/, '') + '.m3u';
  }).catch(failed);
}

function closePlayer() {
  const media = $('player-media').firstChild;
  if (media) { media.pause(); media.removeAttribute('src'); media.load(); }
  $('player-media').replaceChildren();
  $('player').hidden = true;
}
$('close-player').addEventListener('click', closePlayer);

$('copy-stream').addEventListener('click', async () => {
  const input = $('stream-url');
  try {
    await navigator.clipboard.writeText(input.value);
    say('Stream URL copied.');
  } catch (e) {
    // No clipboard outside HTTPS: leave it selected for Ctrl+C.
    input.focus();
    input.select();
    say('Press Ctrl+C (⌘C) to copy the selected URL.');
  }
});

// ---- tokens --------------------------------------------------------------------------

async function refreshTokens() {
  const { tokens } = await api('GET', '/tokens');
  $('token-list').replaceChildren(...tokens.map((t) => el('li', {},
    `${t.name} (made ${new Date(t.created * 1000).toLocaleDateString()}) `,
    el('button', {
      type: 'button', class: 'danger', text: 'Revoke', 'aria-label': `Revoke token ${t.name}`,
      onclick: async () => {
        try { await api('DELETE', '/tokens/' + t.id); say(`Revoked ${t.name}.`); refreshTokens(); } catch (e) { failed(e); }
      },
    }))));
}

$('tokens').querySelector('details').addEventListener('toggle', (ev) => {
  if (ev.target.open) refreshTokens().catch(failed);
});

$('token-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const made = await api('POST', '/tokens', { name: $('token-name').value });
    $('new-token').hidden = false;
    $('new-token-value').value = made.token;
    $('new-token-value').select();
    $('token-name').value = '';
    refreshTokens();
  } catch (e) { failed(e); }
});

// ---- start ---------------------------------------------------------------------------

(async () => {
  try {
    signedIn(await api('GET', '/session'));
  } catch (e) {
    signedOut('');
  }
})();
