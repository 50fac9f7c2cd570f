// The page: list, search and create notes over REST; edit one note live over its websocket.
// URL scheme: "/" shows the list, "/?note=<id>" opens a note (shareable; back/forward work).
// With accounts on (GET /auth/status), it signs in first; notes carry the caller's role.
// "/?note=<id>&link=<token>" is a share link: the note opens with the link's token (kept in
// sessionStorage, taken out of the address bar), without an account, and nothing else does.
// An open note has its version history (a panel beside the text, a preview of a version with
// the changes since, restore and naming for writers) and a Markdown download; the list has the
// trash (restore, delete forever) and an export of every note.

import {
  apply, compose, cpToUtf16, diff, transform, transformCursor, utf16ToCp,
} from './delta.js';
import { OTClient, randomId } from './ot.js';
import { LiveConnection } from './live.js';
import {
  changeCounts, changeSegments, dispositionFilename, fallbackFilename,
} from './versions.js';

const $ = (id) => document.getElementById(id);
const els = {
  name: $('name'),
  search: $('search'),
  newNote: $('new-note'),
  list: $('note-list'),
  listFooter: $('list-footer'),
  welcome: $('welcome'),
  note: $('note'),
  title: $('title'),
  status: $('status'),
  peers: $('peers'),
  notice: $('notice'),
  editor: $('editor'),
  mirror: $('mirror'),
  layout: $('layout'),
  nameField: document.querySelector('.name-field'),
  account: $('account'),
  accountName: $('account-name'),
  signOut: $('sign-out'),
  auth: $('auth'),
  authForm: $('auth-form'),
  authHeading: $('auth-heading'),
  authMessage: $('auth-message'),
  authUsername: $('auth-username'),
  authPassword: $('auth-password'),
  authError: $('auth-error'),
  authSubmit: $('auth-submit'),
  authSwitchLine: $('auth-switch-line'),
  authSwitchText: $('auth-switch-text'),
  authSwitch: $('auth-switch'),
  authClosed: $('auth-closed'),
  access: $('access'),
  share: $('share'),
  deleteNote: $('delete-note'),
  shareDialog: $('share-dialog'),
  shareOwner: $('share-owner'),
  shareList: $('share-list'),
  shareForm: $('share-form'),
  shareUsername: $('share-username'),
  shareRole: $('share-role'),
  shareSubmit: $('share-submit'),
  shareError: $('share-error'),
  deleteDialog: $('delete-dialog'),
  backLink: $('back-link'),
  linkSignIn: $('link-sign-in'),
  linkViewer: $('link-viewer'),
  linkEditor: $('link-editor'),
  linkCreated: $('link-created'),
  linkCreatedLabel: $('link-created-label'),
  linkUrl: $('link-url'),
  linkCopy: $('link-copy'),
  linkCopyStatus: $('link-copy-status'),
  linkList: $('link-list'),
  linkError: $('link-error'),
  history: $('history'),
  download: $('download'),
  editorWrap: $('editor-wrap'),
  historyPanel: $('history-panel'),
  closeHistory: $('close-history'),
  historyError: $('history-error'),
  versionList: $('version-list'),
  versionFooter: $('version-footer'),
  nameVersion: $('name-version'),
  nameVersionForm: $('name-version-form'),
  versionLabel: $('version-label'),
  nameVersionCancel: $('name-version-cancel'),
  nameVersionSave: $('name-version-save'),
  preview: $('preview'),
  previewHeading: $('preview-heading'),
  previewMeta: $('preview-meta'),
  previewSummary: $('preview-summary'),
  previewTitle: $('preview-title'),
  previewError: $('preview-error'),
  previewText: $('preview-text'),
  restoreVersion: $('restore-version'),
  closePreview: $('close-preview'),
  openTrash: $('open-trash'),
  exportAll: $('export-all'),
  trashDialog: $('trash-dialog'),
  trashError: $('trash-error'),
  trashList: $('trash-list'),
  trashFooter: $('trash-footer'),
  purgeDialog: $('purge-dialog'),
  purgeTitle: $('purge-title'),
};

const SESSION_ID = randomId(10);
const PAGE_SIZE = 50;
const SEARCH_DEBOUNCE_MS = 250;
const TITLE_DEBOUNCE_MS = 300;
const PRESENCE_THROTTLE_MS = 100;
const CARET_LABEL_MS = 4000;

// --- small helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'style') node.style.cssText = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function debounce(fn, ms) {
  let t = null;
  const wrapped = (...args) => {
    clearTimeout(t);
    wrapped.pending = true;
    t = setTimeout(() => {
      wrapped.pending = false;
      fn(...args);
    }, ms);
  };
  wrapped.pending = false;
  wrapped.flush = (...args) => {
    clearTimeout(t);
    wrapped.pending = false;
    fn(...args);
  };
  wrapped.cancel = () => {
    clearTimeout(t);
    wrapped.pending = false;
  };
  return wrapped;
}

function throttle(fn, ms) {
  let last = 0;
  let t = null;
  return () => {
    const now = Date.now();
    clearTimeout(t);
    if (now - last >= ms) {
      last = now;
      fn();
    } else {
      t = setTimeout(() => {
        last = Date.now();
        fn();
      }, ms - (now - last));
    }
  };
}

const PALETTE = ['#e11d48', '#2563eb', '#16a34a', '#d97706', '#9333ea', '#0891b2', '#db2777', '#65a30d', '#7c3aed', '#ea580c'];

function colorFor(key) {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return PALETTE[(h >>> 0) % PALETTE.length];
}

function relativeTime(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  if (d < 7) return `${d} d ago`;
  return new Date(t).toLocaleDateString();
}

// --- REST ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status, problem, retryAfter = null) {
    super(message);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
  }
}

/** Fetch JSON; errors throw ApiError with the problem's `detail`. A 401 outside /auth/ means
 * the session is gone: the page goes back to signing in. With `token` (a share link's) the
 * request carries it as a bearer token instead of the cookie, and a 401 means the link was
 * revoked. */
async function api(path, { method = 'GET', body, token = null } = {}) {
  let res;
  const headers = body === undefined ? { Accept: 'application/json' } : { 'Content-Type': 'application/json', Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    res = await fetch(path, {
      method,
      // always the server's answer: a revalidated (304) copy of a note would carry my role then
      cache: 'no-store',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError('the server cannot be reached', 0, null);
  }
  if (!res.ok) throw await failure(res, path, token);
  const type = res.headers.get('Content-Type') || '';
  let data = null;
  if (type.includes('json')) {
    try { data = await res.json(); } catch (err) { data = null; }
  }
  return data;
}

/** The ApiError of a failed response (its problem's detail), after telling the page what a
 * 401 means: a share link revoked (with `token`), else the session gone. */
async function failure(res, path, token = null) {
  const type = res.headers.get('Content-Type') || '';
  let data = null;
  if (type.includes('json')) {
    try { data = await res.json(); } catch (err) { data = null; }
  }
  const detail = data && (data.detail || data.title);
  const retry = Number.parseInt(res.headers.get('Retry-After') || '', 10);
  const error = new ApiError(detail || `${res.status} ${res.statusText}`, res.status, data,
    Number.isNaN(retry) ? null : retry);
  if (res.status === 401 && token) linkFailed(token);
  else if (res.status === 401 && !path.startsWith('/auth/')) signedOutElsewhere();
  return error;
}

/** "5 s", "2 min", "1 h" (a wait, rounded up). */
function duration(seconds) {
  if (seconds < 60) return `${Math.max(1, Math.ceil(seconds))} s`;
  if (seconds < 3600) return `${Math.ceil(seconds / 60)} min`;
  return `${Math.ceil(seconds / 3600)} h`;
}

/** The text to show for a failed request: the problem's detail, its field errors, the wait. */
function problemText(err) {
  let text = err.message;
  const errors = err.problem && Array.isArray(err.problem.errors) ? err.problem.errors : [];
  const fields = errors.map((e) => {
    const loc = Array.isArray(e.loc) && e.loc.length ? String(e.loc[e.loc.length - 1]) : '';
    const name = loc ? `${loc[0].toUpperCase()}${loc.slice(1)}: ` : '';
    return `${name}${e.msg || e.type || ''}`;
  }).filter(Boolean);
  if (fields.length) text = `${text.replace(/\.$/, '')}: ${fields.join('; ')}.`;
  if (err.status === 429 && err.retryAfter !== null) text = `${text} Try again in ${duration(err.retryAfter)}.`;
  return text;
}

// --- display name ----------------------------------------------------------------------------

const ADJECTIVES = ['Amber', 'Brave', 'Calm', 'Clever', 'Cosy', 'Curious', 'Daring', 'Eager', 'Gentle', 'Happy', 'Jolly', 'Kind', 'Lucky', 'Mellow', 'Nimble', 'Quiet', 'Sunny', 'Swift', 'Witty', 'Zesty'];
const ANIMALS = ['Otter', 'Badger', 'Falcon', 'Fox', 'Heron', 'Koala', 'Lynx', 'Marten', 'Narwhal', 'Owl', 'Panda', 'Puffin', 'Quokka', 'Robin', 'Seal', 'Tapir', 'Wombat', 'Yak', 'Zebra', 'Gecko'];
const NAME_KEY = 'notes.name';

function friendlyName() {
  const pick = (a) => a[Math.floor(Math.random() * a.length)];
  return `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;
}

function loadName() {
  let name = null;
  try { name = localStorage.getItem(NAME_KEY); } catch (err) { /* storage disabled */ }
  if (!name || !name.trim()) {
    name = friendlyName();
    try { localStorage.setItem(NAME_KEY, name); } catch (err) { /* ignore */ }
  }
  return name;
}

let displayName = loadName();
els.name.value = displayName;
document.querySelector('.name-dot').style.background = colorFor(displayName);

function commitName() {
  const name = els.name.value.trim().slice(0, 100) || friendlyName();
  els.name.value = name;
  if (name === displayName) return;
  displayName = name;
  document.querySelector('.name-dot').style.background = colorFor(name);
  try { localStorage.setItem(NAME_KEY, name); } catch (err) { /* ignore */ }
  if (session) session.live.setName(name);
}
els.name.addEventListener('change', commitName);
els.name.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    els.name.blur();
  }
});

// --- routing ---------------------------------------------------------------------------------

function noteIdFromUrl() {
  return new URLSearchParams(location.search).get('note');
}

function noteUrl(id) {
  return id ? `/?note=${encodeURIComponent(id)}` : '/';
}

function navigate(id, { replace = false } = {}) {
  const url = noteUrl(id);
  if (location.pathname + location.search !== url) {
    history[replace ? 'replaceState' : 'pushState']({ note: id || null }, '', url);
  }
  route();
}

function route() {
  if (!account.ready) return; // start() routes
  const id = noteIdFromUrl();
  const token = account.on && id ? shareLinks.get(id) : null;
  if (account.on && !account.user) {
    // signed out: only a note this tab has a share link for opens; anything else signs in first
    if (!token) {
      if (els.auth.hidden) showSignIn();
      return;
    }
    if (!els.auth.hidden) showLayout();
  }
  if (id) {
    if (!session || session.id !== id) openNote(id, token);
  } else {
    closeNote();
  }
  markActive();
}

window.addEventListener('popstate', route);

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-nav], a[data-note-id]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.dataset.noteId || null);
});

// --- share links: the tokens this tab was given, by note ------------------------------------

/** noteId -> {token, revoked}: the share links this tab was given, in sessionStorage (a reload
 * keeps the note open) and in memory (where storage is disabled). A link's token opens its one
 * note; a link found revoked stays so (a reload says so without asking the server again). */
const shareLinks = {
  KEY: 'notes.links',
  memory: new Map(),
  read() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(this.KEY) || '{}');
      if (stored && typeof stored === 'object') {
        for (const [id, link] of Object.entries(stored)) {
          if (link && typeof link.token === 'string') this.memory.set(id, { token: link.token, revoked: !!link.revoked });
        }
      }
    } catch (err) { /* storage disabled or garbled: memory only */ }
  },
  get(id) {
    const link = this.memory.get(id);
    return link ? link.token : null;
  },
  isRevoked(id, token) {
    const link = this.memory.get(id);
    return !!(link && link.token === token && link.revoked);
  },
  set(id, token, revoked = false) {
    this.memory.set(id, { token, revoked });
    try {
      sessionStorage.setItem(this.KEY, JSON.stringify(Object.fromEntries(this.memory)));
    } catch (err) { /* memory only */ }
  },
  /** Read `link` from the address (`/?note=ID&link=TOKEN`), keep it, and take it out of the
   * address bar so that the token does not stay on screen (or in what gets copied from it). */
  takeFromUrl() {
    this.read();
    const params = new URLSearchParams(location.search);
    if (!params.has('link')) return;
    const id = params.get('note');
    const token = (params.get('link') || '').trim();
    if (id && token) this.set(id, token);
    history.replaceState({ note: id || null }, '', noteUrl(id) + location.hash);
  },
};

/** A request with a link's token answered 401: the link was revoked. */
function linkFailed(token) {
  if (session && session.token === token) session.onLinkRevoked();
}

// --- the list --------------------------------------------------------------------------------

const list = { q: '', cursor: null, items: new Map(), seq: 0 };

function snippet(content) {
  const s = (content || '').slice(0, 400).replace(/\s+/g, ' ').trim();
  return s.length > 120 ? `${s.slice(0, 120)}…` : s;
}

const ROLE_NAME = { owner: 'owner', editor: 'editor', viewer: 'viewer' };

/** A shared note's role and owner ("viewer · shared by ada"); nothing for one's own notes. */
function roleBadge(note) {
  if (!account.on || !note.role || note.role === 'owner') return null;
  const by = note.owner ? ` · shared by ${note.owner}` : ' · shared with you';
  return el('span', { class: 'note-badge', dataset: { role: note.role } },
    `${ROLE_NAME[note.role] || note.role}${by}`);
}

function noteItem(note) {
  return el('li', { class: 'note-item', dataset: { id: note.id, role: note.role || null } },
    el('a', { class: 'note-link', href: noteUrl(note.id), dataset: { noteId: note.id } },
      el('span', { class: 'note-title' }, note.title || 'Untitled'),
      el('span', { class: 'note-snippet' }, snippet(note.content) || 'Empty note'),
      el('time', { class: 'note-time', datetime: note.updated_at, title: note.updated_at ? new Date(note.updated_at).toLocaleString() : null },
        relativeTime(note.updated_at)),
      roleBadge(note)));
}

function listMessage(text, cls = 'list-empty') {
  els.list.replaceChildren(el('li', { class: cls }, text));
}

async function loadList({ append = false } = {}) {
  const seq = ++list.seq;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (list.q) params.set('q', list.q);
  if (append && list.cursor) params.set('cursor', list.cursor);
  els.list.setAttribute('aria-busy', 'true');
  try {
    const page = await api(`/notes?${params}`);
    if (seq !== list.seq) return; // a newer search won
    if (!append) {
      list.items.clear();
      els.list.replaceChildren();
    }
    for (const note of page.items || []) {
      list.items.set(note.id, note);
      els.list.append(noteItem(note));
    }
    list.cursor = page.next_cursor || null;
    if (!list.items.size) {
      listMessage(list.q ? `No notes match “${list.q}”.` : 'No notes yet. Create the first one!');
    }
    els.listFooter.replaceChildren(list.cursor
      ? el('button', { class: 'btn subtle', type: 'button', onclick: () => loadList({ append: true }) }, 'Load more')
      : '');
    markActive();
  } catch (err) {
    if (seq !== list.seq) return;
    listMessage(`Could not load notes: ${err.message}.`, 'list-error');
    els.listFooter.replaceChildren(el('button', { class: 'btn subtle', type: 'button', onclick: () => loadList() }, 'Try again'));
  } finally {
    if (seq === list.seq) els.list.removeAttribute('aria-busy');
  }
}

function markActive() {
  const id = session ? session.id : null;
  for (const li of els.list.querySelectorAll('.note-item')) {
    li.classList.toggle('active', li.dataset.id === id);
    const a = li.querySelector('a');
    if (li.dataset.id === id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Keep the open note's list entry in step with what happens in it. */
function updateListEntry(id, fields) {
  const li = els.list.querySelector(`.note-item[data-id="${CSS.escape(id)}"]`);
  if (!li) return;
  if ('title' in fields) li.querySelector('.note-title').textContent = fields.title || 'Untitled';
  if ('content' in fields) li.querySelector('.note-snippet').textContent = snippet(fields.content) || 'Empty note';
}

const searchNow = debounce(() => {
  list.q = els.search.value.trim();
  list.cursor = null;
  loadList();
}, SEARCH_DEBOUNCE_MS);
els.search.addEventListener('input', () => searchNow());
els.search.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') searchNow.flush();
  if (e.key === 'Escape') {
    els.search.value = '';
    searchNow.flush();
  }
});

async function createNote({ title = 'Untitled note', content = '' } = {}) {
  const note = await api('/notes', { method: 'POST', body: { title, content } });
  list.items.set(note.id, note);
  if (!list.q) {
    els.list.querySelector('.list-empty')?.remove();
    els.list.prepend(noteItem(note));
  }
  navigate(note.id);
  els.title.focus();
  els.title.select();
  return note;
}

async function onNewNote() {
  els.newNote.disabled = true;
  try {
    await createNote();
  } catch (err) {
    showNotice(`Could not create a note: ${err.message}`);
  } finally {
    els.newNote.disabled = false;
  }
}
els.newNote.addEventListener('click', onNewNote);
document.querySelector('[data-action="new-note"]').addEventListener('click', onNewNote);

// --- notices ---------------------------------------------------------------------------------

let noticeTimer = null;

function showNotice(text, { sticky = false, kind = 'error' } = {}) {
  clearTimeout(noticeTimer);
  els.notice.querySelector('.notice-text').textContent = text;
  els.notice.dataset.kind = kind;
  els.notice.hidden = false;
  if (!sticky) noticeTimer = setTimeout(hideNotice, 8000);
}

function hideNotice() {
  clearTimeout(noticeTimer);
  els.notice.hidden = true;
}
els.notice.querySelector('.notice-close').addEventListener('click', hideNotice);

const ERROR_TEXT = {
  forbidden: 'You may only read this note, so what you typed was not saved.',
  too_large: 'That change would make the note too long, so it was undone.',
  bad_title: 'That title is too long.',
  bad_delta: 'An edit did not fit the text; reloading the note from the server.',
  future_rev: 'Out of step with the server; reloading the note from the server.',
  bad_message: 'The server did not understand a message.',
  bad_json: 'The server did not understand a message.',
};

// --- accounts: signing up, in and out ---------------------------------------------------------

/** From GET /auth/status. `previous`: who was signed in before the sign-in view showed. */
const account = { ready: false, on: false, signup: 'open', user: null, previous: null };
const authForm = { mode: 'login' };

function renderAccount() {
  const user = account.on ? account.user : null;
  els.account.hidden = !user;
  els.account.title = user ? `Signed in as ${user.username}` : '';
  els.accountName.textContent = user ? user.username : '';
  renderLinkMode();
}

/** A note opened with a share link: no list (the link opens that one note); signed out, a way
 * to sign in instead; signed in as someone else, the way back to one's own notes. */
function renderLinkMode() {
  const viaLink = !!(session && session.token);
  document.body.classList.toggle('link-mode', viaLink);
  els.linkSignIn.hidden = !(viaLink && els.auth.hidden && !account.user);
  els.backLink.hidden = viaLink && !account.user;
}

function setAuthError(text) {
  els.authError.textContent = text;
  els.authError.hidden = !text;
}

function setAuthMode(mode) {
  const open = account.signup === 'open';
  const signup = mode === 'signup' && open;
  authForm.mode = signup ? 'signup' : 'login';
  els.authHeading.textContent = signup ? 'Create an account' : 'Sign in';
  els.authSubmit.textContent = signup ? 'Sign up' : 'Sign in';
  els.authPassword.autocomplete = signup ? 'new-password' : 'current-password';
  els.authSwitchText.textContent = signup ? 'Have an account?' : 'No account yet?';
  els.authSwitch.textContent = signup ? 'Sign in' : 'Create an account';
  els.authSwitchLine.hidden = !open;
  els.authClosed.hidden = open;
  for (const hint of els.authForm.querySelectorAll('[data-mode="signup"]')) hint.hidden = !signup;
  setAuthError('');
}

/** The sign-in view instead of the notes. An open note is kept (its socket is closed) so that
 * the same user signing in again carries on with it. */
function showSignIn({ message = '' } = {}) {
  if (account.user) account.previous = account.user.username;
  account.user = null;
  if (session && (session.token || session.deciding)) {
    // a note opened with a share link is nobody's to carry on with after signing in
    session.destroy();
    session = null;
  }
  for (const dialog of [els.shareDialog, els.deleteDialog, els.trashDialog, els.purgeDialog]) {
    if (dialog.open) dialog.close();
  }
  hideNotice();
  list.seq += 1; // a list request under way belongs to the session that ended
  list.items.clear();
  list.q = '';
  list.cursor = null;
  els.search.value = '';
  els.list.replaceChildren();
  els.listFooter.replaceChildren();
  els.layout.hidden = true;
  els.nameField.hidden = true;
  els.auth.hidden = false;
  renderAccount();
  setAuthMode('login');
  els.authMessage.textContent = message;
  els.authMessage.hidden = !message;
  document.title = 'Sign in · notes';
  if (!els.authUsername.value && account.previous) els.authUsername.value = account.previous;
  (els.authUsername.value ? els.authPassword : els.authUsername).focus();
}

/** A 401 or a 4401: the session ended elsewhere (signed out in another tab, expired). */
function signedOutElsewhere() {
  account.on = true;
  if (!account.ready) return; // start() decides what to show
  if (!els.auth.hidden) return;
  showSignIn({ message: 'Your session has ended: sign in again.' });
}

function signedIn(user) {
  account.user = user;
  if (session && account.previous !== user.username) {
    session.destroy(); // what another user left pending is not sent under this one's name
    session = null;
  } else if (session) {
    session.resume();
  }
  account.previous = user.username;
  enterApp();
}

/** The page instead of the sign-in view. */
function showLayout() {
  els.auth.hidden = true;
  els.layout.hidden = false;
  els.nameField.hidden = false;
  els.authMessage.hidden = true;
  setAuthError('');
  renderAccount();
  if (!session) document.title = 'notes';
}

/** Show the notes (signed in, or accounts off; signed out, a note opened with a share link). */
function enterApp() {
  showLayout();
  if (mayList()) loadList();
  route();
}

/** Is there a list to show? Not for whoever holds only a share link. */
function mayList() {
  return !account.on || !!account.user;
}

els.authSwitch.addEventListener('click', () => {
  setAuthMode(authForm.mode === 'signup' ? 'login' : 'signup');
  els.authUsername.focus();
});

els.authForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const username = els.authUsername.value.trim();
  const password = els.authPassword.value;
  if (!username || !password) {
    setAuthError('Enter a username and a password.');
    (username ? els.authPassword : els.authUsername).focus();
    return;
  }
  const signup = authForm.mode === 'signup';
  els.authSubmit.disabled = true;
  setAuthError('');
  try {
    const user = await api(signup ? '/auth/signup' : '/auth/login', { method: 'POST', body: { username, password } });
    els.authPassword.value = '';
    signedIn(user);
  } catch (err) {
    if (err.status === 403 && signup) {
      account.signup = 'closed';
      setAuthMode('login');
    }
    setAuthError(problemText(err));
    if (err.status === 401) els.authPassword.select();
  } finally {
    els.authSubmit.disabled = false;
  }
});

async function signOut() {
  els.signOut.disabled = true;
  try {
    if (session) {
      if (session.setTitle.pending) session.setTitle.flush(els.title.value);
      await session.settled(5000); // what was typed reaches the server first
      session.destroy();
      session = null;
      els.editor.value = ''; // nothing of the note stays in the page
      els.title.value = '';
      els.mirror.replaceChildren();
    }
    await api('/auth/logout', { method: 'POST' });
  } catch (err) {
    showNotice(`Could not sign out: ${problemText(err)}`);
    route(); // reopen the note
    return;
  } finally {
    els.signOut.disabled = false;
  }
  showSignIn({ message: 'You are signed out.' });
}
els.signOut.addEventListener('click', signOut);

// --- sharing and moving to the trash (owners) -----------------------------------------------

const shares = { noteId: null };

function setShareError(text) {
  els.shareError.textContent = text;
  els.shareError.hidden = !text;
}

function shareItem(share) {
  const roleSelect = el('select', {
    class: 'share-item-role',
    'aria-label': `Role of ${share.username}`,
    onchange: (e) => putShare(share.username, e.target.value),
  }, el('option', { value: 'viewer', selected: share.role === 'viewer' }, 'Viewer'),
  el('option', { value: 'editor', selected: share.role === 'editor' }, 'Editor'));
  return el('li', { class: 'share-item', dataset: { username: share.username, role: share.role } },
    el('span', { class: 'share-name' }, share.username),
    roleSelect,
    el('button', {
      class: 'btn small', type: 'button', 'aria-label': `Remove ${share.username}`,
      onclick: () => removeShare(share.username),
    }, 'Remove'));
}

function renderShares(data) {
  const me = account.user ? account.user.username : null;
  els.shareOwner.textContent = data.owner ? `Owner: ${data.owner}${data.owner === me ? ' (you)' : ''}` : '';
  const items = (data.items || []).map(shareItem);
  if (!items.length) items.push(el('li', { class: 'share-empty' }, 'Not shared with anyone yet.'));
  els.shareList.replaceChildren(...items);
}

async function loadShares() {
  const id = shares.noteId;
  if (!id) return;
  els.shareList.setAttribute('aria-busy', 'true');
  try {
    const data = await api(`/notes/${encodeURIComponent(id)}/shares`);
    if (shares.noteId === id) renderShares(data);
  } catch (err) {
    if (shares.noteId === id) setShareError(`Could not load who has access: ${problemText(err)}`);
  } finally {
    els.shareList.removeAttribute('aria-busy');
  }
}

/** Give `username` the role (new share or change); true when the server agreed. */
async function putShare(username, role) {
  const id = shares.noteId;
  setShareError('');
  try {
    await api(`/notes/${encodeURIComponent(id)}/shares/${encodeURIComponent(username)}`, { method: 'PUT', body: { role } });
    return true;
  } catch (err) {
    setShareError(problemText(err));
    return false;
  } finally {
    await loadShares();
  }
}

async function removeShare(username) {
  const id = shares.noteId;
  setShareError('');
  try {
    await api(`/notes/${encodeURIComponent(id)}/shares/${encodeURIComponent(username)}`, { method: 'DELETE' });
  } catch (err) {
    setShareError(problemText(err));
  } finally {
    await loadShares();
  }
}

function openShareDialog() {
  if (!session) return;
  shares.noteId = session.id;
  setShareError('');
  els.shareUsername.value = '';
  els.shareRole.value = 'viewer';
  els.shareOwner.textContent = '';
  els.shareList.replaceChildren(el('li', { class: 'share-empty' }, 'Loading…'));
  hideCreatedLink();
  setLinkError('');
  els.linkList.replaceChildren(el('li', { class: 'link-empty' }, 'Loading…'));
  els.shareDialog.showModal();
  els.shareUsername.focus();
  loadShares();
  loadLinks();
}
els.share.addEventListener('click', openShareDialog);
for (const button of els.shareDialog.querySelectorAll('[data-close]')) {
  button.addEventListener('click', () => els.shareDialog.close());
}
els.shareDialog.addEventListener('close', () => {
  shares.noteId = null;
  hideCreatedLink(); // a link's address is shown once, not again on the next opening
});

// Share links: made and revoked here; the address with the token is shown only when made.

const ROLE_TITLE = { viewer: 'Viewer', editor: 'Editor' };

function setLinkError(text) {
  els.linkError.textContent = text;
  els.linkError.hidden = !text;
}

function hideCreatedLink() {
  els.linkCreated.hidden = true;
  delete els.linkCreated.dataset.id;
  delete els.linkCreated.dataset.role;
  els.linkUrl.value = '';
  els.linkCopy.textContent = 'Copy';
  els.linkCopyStatus.textContent = '';
}

/** The address to send: this page's own origin (the one the owner reached it by, https behind a
 * TLS proxy too) with the link's token; the server's `url` where there is no token. */
function linkAddress(noteId, link) {
  if (!link.token) return link.url;
  return `${location.origin}/?${new URLSearchParams({ note: noteId, link: link.token })}`;
}

function showCreatedLink(noteId, link) {
  els.linkCreated.dataset.id = link.id;
  els.linkCreated.dataset.role = link.role;
  els.linkCreatedLabel.textContent = `New ${link.role} link`;
  els.linkUrl.value = linkAddress(noteId, link);
  els.linkCopy.textContent = 'Copy';
  els.linkCopyStatus.textContent = '';
  els.linkCreated.hidden = false;
  els.linkUrl.focus();
  els.linkUrl.select();
}

function linkItem(link) {
  const role = ROLE_TITLE[link.role] || link.role;
  const when = relativeTime(link.created_at);
  const full = link.created_at ? new Date(link.created_at).toLocaleString() : '';
  const fresh = els.linkCreated.dataset.id === link.id;
  return el('li', { class: 'link-item', dataset: { id: link.id, role: link.role } },
    el('span', { class: 'share-name link-role' }, `${role} link`),
    fresh ? el('span', { class: 'link-fresh' }, 'new') : null,
    el('time', { class: 'link-time', datetime: link.created_at, title: full }, `created ${when}`),
    el('button', {
      class: 'btn small danger', type: 'button', 'aria-label': `Revoke ${link.role} link created ${full || when}`,
      onclick: (e) => revokeLink(link, e.currentTarget),
    }, 'Revoke'));
}

function renderLinks(items) {
  const rows = items.map(linkItem);
  if (!rows.length) rows.push(el('li', { class: 'link-empty' }, 'No links yet.'));
  els.linkList.replaceChildren(...rows);
}

async function loadLinks() {
  const id = shares.noteId;
  if (!id) return;
  els.linkList.setAttribute('aria-busy', 'true');
  try {
    const data = await api(`/notes/${encodeURIComponent(id)}/links`);
    if (shares.noteId === id) renderLinks(data.items || []);
  } catch (err) {
    if (shares.noteId === id) setLinkError(`Could not load the links: ${problemText(err)}`);
  } finally {
    els.linkList.removeAttribute('aria-busy');
  }
}

async function createLink(role) {
  const id = shares.noteId;
  if (!id) return;
  setLinkError('');
  els.linkViewer.disabled = true;
  els.linkEditor.disabled = true;
  try {
    const link = await api(`/notes/${encodeURIComponent(id)}/links`, { method: 'POST', body: { role } });
    if (shares.noteId === id) showCreatedLink(id, link);
  } catch (err) {
    if (shares.noteId === id) setLinkError(`Could not make the link: ${problemText(err)}`);
  } finally {
    els.linkViewer.disabled = false;
    els.linkEditor.disabled = false;
  }
  await loadLinks();
}

async function revokeLink(link, button) {
  const id = shares.noteId;
  if (!id) return;
  setLinkError('');
  if (button) button.disabled = true;
  try {
    await api(`/notes/${encodeURIComponent(id)}/links/${encodeURIComponent(link.id)}`, { method: 'DELETE' });
    if (els.linkCreated.dataset.id === link.id) hideCreatedLink();
  } catch (err) {
    if (shares.noteId === id) setLinkError(`Could not revoke the link: ${problemText(err)}`);
  }
  await loadLinks();
}

async function copyLink() {
  const url = els.linkUrl.value;
  if (!url) return;
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch (err) {
    // no clipboard API here (or refused): the selection and the older command
    els.linkUrl.focus();
    els.linkUrl.select();
    try { copied = document.execCommand('copy'); } catch (err2) { copied = false; }
  }
  if (els.linkUrl.value !== url) return; // the dialog moved on meanwhile
  els.linkCopy.textContent = copied ? 'Copied' : 'Copy';
  els.linkCopyStatus.textContent = copied
    ? 'Copied to the clipboard.'
    : 'Could not copy: select the address and copy it yourself.';
  if (!copied) els.linkUrl.select();
}

els.linkViewer.addEventListener('click', () => createLink('viewer'));
els.linkEditor.addEventListener('click', () => createLink('editor'));
els.linkCopy.addEventListener('click', copyLink);
els.linkUrl.addEventListener('focus', () => els.linkUrl.select());

els.shareForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const username = els.shareUsername.value.trim();
  if (!username) {
    setShareError('Enter the username of the person to share with.');
    els.shareUsername.focus();
    return;
  }
  els.shareSubmit.disabled = true;
  try {
    if (await putShare(username, els.shareRole.value)) els.shareUsername.value = '';
  } finally {
    els.shareSubmit.disabled = false;
    els.shareUsername.focus();
  }
});

els.deleteNote.addEventListener('click', () => {
  els.deleteDialog.returnValue = '';
  els.deleteDialog.showModal();
});

els.deleteDialog.addEventListener('close', async () => {
  if (els.deleteDialog.returnValue !== 'delete' || !session) return;
  const s = session;
  s.deleting = true; // our own delete needs no "was deleted" notice
  try {
    await api(`/notes/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
  } catch (err) {
    s.deleting = false;
    showNotice(`Could not move the note to the trash: ${problemText(err)}`);
    return;
  }
  s.client.deleted = true;
  list.items.delete(s.id);
  els.list.querySelector(`.note-item[data-id="${CSS.escape(s.id)}"]`)?.remove();
  if (session === s) navigate(null);
  showNotice('The note was moved to the trash.', { kind: 'warning' });
});

// --- the open note ---------------------------------------------------------------------------

/** @type {NoteSession|null} */
let session = null;

const ROLE_RANK = { viewer: 1, editor: 2, owner: 3 };

class NoteSession {
  /** `token`: a share link's for this note (null: the account's cookie, or accounts off). */
  constructor(id, token = null) {
    this.id = id;
    this.client = new OTClient({ sessionId: SESSION_ID });
    this.lastValue = ''; // what the textarea held after the last sync with the client
    this.domPending = null; // remote changes not yet shown (while an IME composition runs)
    this.composing = false;
    this.ready = false;
    this.peerSeen = new Map(); // client -> {s, e, t}: when its caret last moved
    this.connection = 'connecting';
    const known = list.items.get(id);
    // my role on the note (null: not known yet, read-only until it is) and its owner's name
    this.role = account.on ? (known && known.role) || null : 'owner';
    this.owner = (known && known.owner) || null;
    this.lost = null; // 'forbidden' | 'unauthorized' | 'revoked': the live connection ended for good
    // Signed in with a link too: whichever of the two does more (my own notes stay mine).
    this.deciding = !!(token && account.user);
    this.token = this.deciding ? null : token; // the credential in use: REST Bearer, socket token=
    this.live = new LiveConnection({
      noteId: id,
      name: displayName,
      client: this.client,
      token: this.token,
      onStatus: (status) => {
        this.connection = status;
        renderStatus();
        if (status === 'deleted') this.onDeleted();
        if (status === 'forbidden') this.onForbidden();
        if (status === 'unauthorized') this.onUnauthorized();
        if ((status === 'reconnecting' || status === 'offline') && this.client.rev === null) this.probe();
      },
    });
    const c = this.client;
    this.off = [
      c.on('text', (e) => this.onRemoteText(e)),
      c.on('title', ({ title }) => this.onRemoteTitle(title)),
      c.on('peers', () => scheduleOverlay()),
      c.on('state', () => renderStatus()),
      c.on('hello', () => this.onHello()),
      c.on('error', (msg) => this.onError(msg)),
      c.on('deleted', () => this.onDeleted()),
    ];
    this.candidate = token;
  }

  /** Connect (openNote calls this once the page shows the session). */
  begin() {
    const token = this.candidate;
    if (this.deciding) {
      this.chooseCredential(token);
    } else if (token && shareLinks.isRevoked(this.id, token)) {
      this.onLinkRevoked(); // found so before: not even the note's text again
    } else {
      this.live.start();
      this.loadAccess();
    }
  }

  /** Signed in and holding a link for this note: the account if its role is at least the
   * link's (the owner opening their own link keeps Share and Delete), else the link. */
  async chooseCredential(token) {
    const path = `/notes/${encodeURIComponent(this.id)}`;
    const [mine, linked] = await Promise.all([
      api(path).catch(() => null),
      api(path, { token }).catch((err) => err),
    ]);
    if (session !== this) return;
    this.deciding = false;
    const linkRole = linked instanceof ApiError ? null : linked.role;
    if (mine && (!linkRole || (ROLE_RANK[mine.role] || 3) >= ROLE_RANK[linkRole])) {
      this.setAccess(mine.role || 'owner', mine.owner || null);
    } else {
      this.token = token;
      this.live.token = token;
      if (linked instanceof ApiError && linked.status === 401) {
        this.onLinkRevoked();
        return;
      }
      if (linkRole) this.setAccess(linkRole, linked.owner || null);
      else this.applyAccess();
    }
    this.live.start();
  }

  // Access: the role decides whether the editor and the title can be changed.

  canWrite() {
    return !this.lost && !this.client.deleted && (this.role === 'owner' || this.role === 'editor');
  }

  setAccess(role, owner = this.owner) {
    this.role = role;
    this.owner = owner;
    this.applyAccess();
  }

  applyAccess() {
    if (session !== this) return;
    const writable = this.canWrite();
    els.title.readOnly = !writable;
    if (this.ready) {
      els.editor.readOnly = !writable;
      els.editor.placeholder = writable ? 'Start typing…' : '';
    }
    renderAccess();
  }

  /** My role and the owner, from GET /notes/{id} (accounts on; the list's may be stale). */
  async loadAccess() {
    if (!account.on || this.loadingAccess || this.deciding) return;
    this.loadingAccess = true;
    try {
      const note = await api(`/notes/${encodeURIComponent(this.id)}`, { token: this.token });
      if (session === this && !this.lost) this.setAccess(note.role || 'owner', note.owner || null);
    } catch (err) {
      // 404: the socket says so too (4404); otherwise the hello asks again
    } finally {
      this.loadingAccess = false;
    }
  }

  onError(msg) {
    if (msg.code === 'forbidden' && account.on && this.token) {
      this.setAccess('viewer');
      showNotice('This link lets you read the note, not change it, so what you typed was not saved.',
        { sticky: true, kind: 'warning' });
      return;
    }
    if (msg.code === 'forbidden' && account.on) {
      // my share became viewer while the note was open: ot.js took back what was refused
      this.setAccess('viewer');
      showNotice('You may only read this note now (your share was changed to viewer), so what you typed was not saved.',
        { sticky: true, kind: 'warning' });
      return;
    }
    showNotice(ERROR_TEXT[msg.code] || msg.message || `Error: ${msg.code}`);
  }

  /** 4403: the share was revoked while the note was open. No reconnecting. */
  onForbidden() {
    if (this.lost) return;
    this.lost = 'forbidden';
    this.applyAccess();
    els.editor.readOnly = true;
    els.editor.placeholder = '';
    renderStatus();
    showNotice('Your access to this note was removed: it is no longer shared with you.', { sticky: true, kind: 'warning' });
    list.items.delete(this.id);
    const li = els.list.querySelector(`.note-item[data-id="${CSS.escape(this.id)}"]`);
    if (li) li.remove();
  }

  /** 4401: signed out (in another tab, say) or the session expired. What is pending is kept and
   * sent once the same user signs in again (resume). */
  onUnauthorized() {
    if (this.token) {
      this.onLinkRevoked();
      return;
    }
    this.lost = 'unauthorized';
    this.applyAccess();
    renderStatus();
    signedOutElsewhere();
  }

  /** A share link's 4401 (or a 401 to its token): the owner revoked it. No signing in (the link
   * was not an account), no reconnecting; what is on screen stays, read only. */
  onLinkRevoked() {
    if (this.lost === 'revoked') return;
    this.lost = 'revoked';
    if (this.token) shareLinks.set(this.id, this.token, true);
    this.live.stop();
    this.applyAccess();
    els.editor.readOnly = true;
    els.editor.placeholder = '';
    renderStatus();
    const unsent = this.client.pending ? ' What you typed last could not be saved.' : '';
    showNotice(`This link no longer works (it was revoked). Ask the note’s owner for a new one.${unsent}`,
      { sticky: true, kind: 'warning' });
  }

  resume() {
    if (this.lost !== 'unauthorized') return;
    this.lost = null;
    this.live.start();
    this.applyAccess();
    this.loadAccess();
  }

  /** Resolves once nothing is pending (or after timeoutMs). */
  settled(timeoutMs) {
    const c = this.client;
    if (!c.pending || c.deleted || this.lost) return Promise.resolve();
    return new Promise((resolve) => {
      let off = null;
      const done = () => {
        clearTimeout(timer);
        if (off) off();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      off = c.on('state', () => {
        if (!c.pending) done();
      });
    });
  }

  onHello() {
    if (!this.ready) {
      this.ready = true;
      this.applyAccess();
      if (document.activeElement !== els.title) els.editor.focus({ preventScroll: true });
      els.editor.setSelectionRange(0, 0);
    }
    if (account.on && this.role === null) this.loadAccess();
    if (document.activeElement !== els.title) els.title.value = this.client.title;
    document.title = `${this.client.title || 'Untitled'} · notes`;
    this.sendCursor();
  }

  /** Never connected yet: does the note exist at all? (A socket to a missing note just fails.) */
  async probe() {
    if (this.probing) return;
    this.probing = true;
    try {
      await api(`/notes/${encodeURIComponent(this.id)}`, { token: this.token });
    } catch (err) {
      if (session === this && this.client.rev === null && (err.status === 404 || err.status === 422)) {
        this.live.stop();
        this.client.deleted = true;
        this.onDeleted('This note does not exist (or was deleted).');
      }
    } finally {
      setTimeout(() => { this.probing = false; }, 5000);
    }
  }

  onDeleted(text = null) {
    if (this.deletedShown) return;
    const missing = account.on ? 'This note does not exist, or it is not shared with you.' : 'This note does not exist (or was deleted).';
    if (!text) text = this.client.rev === null ? missing : 'This note was moved to the trash.';
    else if (this.client.rev === null) text = missing;
    this.deletedShown = true;
    els.editor.readOnly = true;
    els.editor.placeholder = '';
    els.title.readOnly = true;
    renderStatus();
    renderAccess();
    if (!this.deleting) showNotice(text, { sticky: true, kind: 'warning' });
    const li = els.list.querySelector(`.note-item[data-id="${CSS.escape(this.id)}"]`);
    if (li) li.remove();
  }

  onRemoteTitle(title) {
    if (els.title.value !== title) {
      const focused = document.activeElement === els.title;
      const s = els.title.selectionStart;
      const e = els.title.selectionEnd;
      els.title.value = title;
      if (focused) els.title.setSelectionRange(Math.min(s, title.length), Math.min(e, title.length));
    }
    document.title = `${title || 'Untitled'} · notes`;
    updateListEntry(this.id, { title });
  }

  // Text: the textarea always shows lastValue (+ domPending once flushed) == client.text.

  onRemoteText({ delta, source, text }) {
    if (source === 'reset' || delta === null) {
      this.domPending = null;
      setEditorValue(text, null);
      this.lastValue = text;
    } else {
      this.domPending = this.domPending ? compose(this.domPending, delta) : delta;
      if (!this.composing) this.flushDom();
    }
    scheduleOverlay();
    updateListEntry(this.id, { content: text });
  }

  flushDom() {
    const d = this.domPending;
    this.domPending = null;
    if (!d) return;
    const ta = els.editor;
    const value = ta.value;
    let next;
    try {
      next = apply(value, d);
    } catch (err) {
      next = null;
    }
    if (next === null || next !== this.client.text) {
      // should not happen: show the client's text as it is
      console.warn('notes: the editor was out of step; resetting it');
      next = this.client.text;
      setEditorValue(next, null);
    } else {
      const start = utf16ToCp(value, ta.selectionStart);
      const end = utf16ToCp(value, ta.selectionEnd);
      // the local caret stays before text others insert right at it
      const moved = transformCursor({ index: start, length: end - start }, d, false);
      setEditorValue(next, moved);
    }
    this.lastValue = next;
  }

  onInput() {
    if (!this.ready || this.client.deleted) return;
    const ta = els.editor;
    const value = ta.value;
    if (value === this.lastValue) return;
    if (!this.canWrite()) {
      setEditorValue(this.lastValue, null); // read-only: what changed it is not kept
      return;
    }
    const caret = utf16ToCp(value, ta.selectionEnd);
    let d = diff(this.lastValue, value, caret);
    if (this.domPending) {
      // the client's text already has remote changes the textarea does not show yet
      const remote = this.domPending;
      this.domPending = transform(remote, d, true);
      d = transform(d, remote, false);
    }
    this.lastValue = value;
    this.client.localEdit(d);
    if (!this.composing && this.domPending) this.flushDom();
    scheduleOverlay();
    updateListEntry(this.id, { content: this.client.text });
    this.sendCursor();
  }

  onCompositionEnd() {
    this.composing = false;
    // the final input event may come after compositionend; flush on the next tick
    setTimeout(() => {
      if (session === this && !this.composing && this.domPending) {
        this.flushDom();
        scheduleOverlay();
      }
    }, 0);
  }

  localCursor() {
    const ta = els.editor;
    const value = ta.value;
    const s = utf16ToCp(value, ta.selectionStart);
    const e = utf16ToCp(value, ta.selectionEnd);
    return { index: s, length: e - s };
  }

  sendCursor() {
    if (!this.ready || this.domPending) return;
    const c = this.localCursor();
    const prev = this.client.cursor;
    if (prev && prev.index === c.index && prev.length === c.length && this.client.sentCursorClean) return;
    this.throttledCursor();
  }

  throttledCursor = throttle(() => {
    if (session !== this || !this.ready || this.domPending) return;
    this.client.setCursor(this.localCursor());
  }, PRESENCE_THROTTLE_MS);

  setTitle = debounce((title) => {
    if (!this.canWrite()) return; // a viewer's title is never sent (it would be refused)
    this.client.setTitle(title);
    document.title = `${title || 'Untitled'} · notes`;
    updateListEntry(this.id, { title });
  }, TITLE_DEBOUNCE_MS);

  destroy() {
    if (versions.session === this) closeHistory();
    this.setTitle.cancel();
    clearTimeout(this.overlayTimer);
    for (const off of this.off) off();
    this.live.onStatus = () => {};
    const c = this.client;
    if (!c.pending || c.deleted) {
      this.live.stop();
      return;
    }
    // leaving with edits not yet acknowledged: keep the socket until they are (or give up)
    const done = () => {
      clearTimeout(timer);
      offState();
      this.live.stop();
    };
    const offState = c.on('state', () => {
      if (!c.pending) done();
    });
    const timer = setTimeout(done, 15000);
  }
}

function setEditorValue(text, cursor) {
  const ta = els.editor;
  const scroll = ta.scrollTop;
  const dir = ta.selectionDirection;
  const focused = document.activeElement === ta;
  if (ta.value !== text) ta.value = text;
  if (cursor) {
    const s = cpToUtf16(text, cursor.index);
    const e = cpToUtf16(text, cursor.index + cursor.length, s, cursor.index);
    if (focused || ta.selectionStart !== s || ta.selectionEnd !== e) ta.setSelectionRange(s, e, dir);
  }
  ta.scrollTop = scroll;
}

function openNote(id, token = null) {
  if (session) {
    if (session.setTitle.pending) session.setTitle.flush(els.title.value);
    session.destroy();
  }
  hideNotice();
  session = new NoteSession(id, token);
  els.welcome.hidden = true;
  els.note.hidden = false;
  document.body.classList.add('has-note');
  const known = list.items.get(id);
  els.title.value = known ? known.title : '';
  els.title.readOnly = !session.canWrite();
  els.editor.value = '';
  els.editor.readOnly = true;
  els.editor.placeholder = 'Connecting…';
  els.mirror.replaceChildren();
  document.title = `${known ? known.title || 'Untitled' : 'Note'} · notes`;
  renderStatus();
  renderAccess();
  scheduleOverlay();
  session.begin();
}

function closeNote() {
  if (session) {
    session.destroy();
    session = null;
    renderLinkMode();
    if (mayList()) loadList(); // pick up what changed while the note was open
  }
  hideNotice();
  els.note.hidden = true;
  els.welcome.hidden = false;
  document.body.classList.remove('has-note');
  document.title = 'notes';
}

// editor events (one set, for whichever note is open)
els.editor.addEventListener('input', () => session && session.onInput());
els.editor.addEventListener('compositionstart', () => {
  if (session) session.composing = true;
});
els.editor.addEventListener('compositionend', () => session && session.onCompositionEnd());
for (const ev of ['select', 'keyup', 'mouseup', 'focus']) {
  els.editor.addEventListener(ev, () => session && session.sendCursor());
}
document.addEventListener('selectionchange', () => {
  if (session && document.activeElement === els.editor) session.sendCursor();
});
els.editor.addEventListener('scroll', () => {
  els.mirror.scrollTop = els.editor.scrollTop;
  els.mirror.scrollLeft = els.editor.scrollLeft;
});
els.title.addEventListener('input', () => session && session.setTitle(els.title.value));
els.title.addEventListener('keydown', (e) => {
  if (e.key === 'Enter') {
    e.preventDefault();
    if (session) session.setTitle.flush(els.title.value);
    els.editor.focus();
  }
});
els.title.addEventListener('blur', () => session && session.setTitle.flush(els.title.value));

// --- status ----------------------------------------------------------------------------------

const CONNECTION_TEXT = {
  idle: 'connecting',
  connecting: 'connecting',
  connected: 'connected',
  reconnecting: 'reconnecting',
  offline: 'offline',
  closed: 'offline',
  deleted: 'note deleted',
  forbidden: 'no access',
  unauthorized: 'signed out',
  revoked: 'link revoked',
};

function renderStatus() {
  if (!session) return;
  const conn = els.status.querySelector('.conn');
  const save = els.status.querySelector('.save');
  const c = session.client;
  let state = c.deleted ? 'deleted' : session.connection;
  if (!c.deleted && session.lost === 'revoked') state = 'revoked';
  conn.dataset.state = state;
  conn.textContent = CONNECTION_TEXT[state] || state;
  if (state === 'offline' || state === 'reconnecting') {
    const secs = Math.ceil(session.live.nextDelay / 1000);
    conn.title = `Retrying in about ${secs} s; keep typing, nothing is lost.`;
  } else {
    conn.title = '';
  }
  const saved = c.saved;
  if (c.rev === null) {
    save.hidden = true;
    els.status.querySelector('.sep').hidden = true;
    conn.dataset.state = state;
    els.status.dataset.connection = state;
    els.status.dataset.saved = 'false';
    return;
  }
  save.dataset.state = saved ? 'saved' : 'unsaved';
  save.textContent = saved ? 'saved' : 'unsaved changes';
  save.hidden = c.deleted;
  els.status.querySelector('.sep').hidden = c.deleted;
  els.status.dataset.connection = state;
  els.status.dataset.saved = saved ? 'true' : 'false';
}

/** The open note's access: the read-only label, Share and Move to trash (owners only), History
 * and Download (whoever reads it), restoring and naming versions (writers). */
function renderAccess() {
  const s = session;
  const role = s ? s.role : null;
  const lost = s && (s.lost === 'forbidden' || s.lost === 'revoked');
  const gone = !s || lost || s.client.deleted;
  const owner = !gone && role === 'owner';
  els.share.hidden = !(owner && account.on);
  els.deleteNote.hidden = !owner;
  els.history.hidden = gone;
  els.download.hidden = gone;
  if (gone && versions.session) closeHistory();
  renderHistoryAccess();
  const by = s && s.owner ? ` by ${s.owner}` : '';
  let text = '';
  if (s && s.lost === 'forbidden') text = 'No access: this note is no longer shared with you.';
  else if (s && s.lost === 'revoked') text = 'This link no longer works (it was revoked).';
  else if (gone || !account.on) text = '';
  else if (s.token && role === 'viewer') text = 'Opened with a share link — viewer (read only)';
  else if (s.token && role === 'editor') text = 'Opened with a share link — editor';
  else if (s.token) text = 'Opened with a share link';
  else if (role === 'viewer') text = `Read only — shared with you as viewer${by}.`;
  else if (role === 'editor') text = `Shared with you as editor${by}.`;
  els.access.textContent = text;
  els.access.hidden = !text;
  els.access.dataset.role = lost ? 'none' : role || '';
  els.access.dataset.link = s && s.token ? 'true' : 'false';
  renderLinkMode();
}

// --- version history: the panel, the preview, restoring and naming ----------------------------

const VERSION_PAGE_SIZE = 30;
const MAX_PAGE_SIZE = 200;
const VERSIONS_REFRESH_MS = 250;
const PREVIEW_REFRESH_MS = 700;

/** The history panel's state: open for `session` (null: closed). */
const versions = {
  session: null,
  items: [], // loaded so far, newest first
  cursor: null, // next_cursor of the last page loaded
  seq: 0, // list requests: only the newest one's answer is shown
  selected: null, // the version previewed (its list fields), or null
  contents: new Map(), // version id -> its text (a version never changes)
  previewSeq: 0,
  savedRev: null, // the open note's last `saved` revision seen (a save records a version)
  off: [],
};

function notePath(s, rest = '') {
  return `/notes/${encodeURIComponent(s.id)}${rest}`;
}

/** "Today 14:03:12", "Mon 9 Dec, 14:03" — when a version was saved. */
function versionTime(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return '';
  const now = new Date();
  const time = t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (t.toDateString() === now.toDateString()) return `Today ${time}`;
  const sameYear = t.getFullYear() === now.getFullYear();
  return t.toLocaleString([], {
    weekday: 'short', day: 'numeric', month: 'short', year: sameYear ? undefined : 'numeric',
    hour: '2-digit', minute: '2-digit',
  });
}

/** versionTime inside a sentence: "the version of today 14:03:12". */
function versionWhen(iso) {
  return versionTime(iso).replace(/^Today /, 'today ');
}

function fullTime(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? '' : t.toLocaleString();
}

function authorsText(v) {
  const authors = Array.isArray(v.authors) ? v.authors.filter(Boolean) : [];
  return authors.length ? `by ${authors.join(', ')}` : 'author not recorded';
}

function setHistoryError(text) {
  els.historyError.textContent = text;
  els.historyError.hidden = !text;
}

function setPreviewError(text) {
  els.previewError.textContent = text;
  els.previewError.hidden = !text;
}

function openHistory() {
  const s = session;
  if (!s) return;
  if (versions.session === s) {
    closeHistory({ focus: true });
    return;
  }
  closeHistory();
  versions.session = s;
  versions.savedRev = s.client.savedRev;
  const refreshList = debounce(() => loadVersions(), VERSIONS_REFRESH_MS);
  const refreshPreview = debounce(() => {
    if (versions.selected) showPreview(versions.selected, { quiet: true });
  }, PREVIEW_REFRESH_MS);
  versions.off = [
    // every save that changes the note records a version: show it
    s.client.on('state', () => {
      const rev = s.client.savedRev;
      if (rev !== null && rev !== versions.savedRev) {
        versions.savedRev = rev;
        refreshList();
      }
    }),
    // the preview's changes are against the current text, which just moved
    s.client.on('text', () => refreshPreview()),
    s.client.on('title', () => refreshPreview()),
    () => {
      refreshList.cancel();
      refreshPreview.cancel();
    },
  ];
  setHistoryError('');
  hideNameForm();
  els.versionList.replaceChildren(el('li', { class: 'version-empty' }, 'Loading…'));
  els.versionFooter.replaceChildren();
  els.historyPanel.hidden = false;
  els.history.setAttribute('aria-expanded', 'true');
  els.history.classList.add('active');
  document.body.classList.add('history-open');
  renderHistoryAccess();
  loadVersions();
  els.closeHistory.focus({ preventScroll: true });
}

function closeHistory({ focus = false } = {}) {
  closePreview();
  for (const off of versions.off) off();
  versions.off = [];
  versions.session = null;
  versions.items = [];
  versions.cursor = null;
  versions.contents.clear();
  versions.seq += 1;
  hideNameForm();
  els.historyPanel.hidden = true;
  els.history.setAttribute('aria-expanded', 'false');
  els.history.classList.remove('active');
  document.body.classList.remove('history-open');
  els.versionList.replaceChildren();
  els.versionFooter.replaceChildren();
  if (focus) els.history.focus({ preventScroll: true });
}

/** The first page again (as many versions as are shown, so "Load more" keeps its place), or,
 * with `append`, the next one. */
async function loadVersions({ append = false } = {}) {
  const s = versions.session;
  if (!s) return;
  const seq = ++versions.seq;
  const shown = versions.items.length;
  const limit = append ? VERSION_PAGE_SIZE : Math.min(MAX_PAGE_SIZE, Math.max(VERSION_PAGE_SIZE, shown));
  const params = new URLSearchParams({ limit: String(limit) });
  if (append && versions.cursor) params.set('cursor', versions.cursor);
  els.versionList.setAttribute('aria-busy', 'true');
  try {
    const page = await api(notePath(s, `/versions?${params}`), { token: s.token });
    if (seq !== versions.seq || versions.session !== s) return;
    const items = page.items || [];
    if (append) {
      const known = new Set(versions.items.map((v) => v.id));
      versions.items.push(...items.filter((v) => !known.has(v.id)));
    } else {
      versions.items = items;
    }
    versions.cursor = page.next_cursor || null;
    if (versions.selected) {
      versions.selected = versions.items.find((v) => v.id === versions.selected.id) || versions.selected;
    }
    setHistoryError('');
    renderVersions();
  } catch (err) {
    if (seq !== versions.seq || versions.session !== s) return;
    setHistoryError(`Could not load the history: ${problemText(err)}`);
    if (!versions.items.length) els.versionList.replaceChildren();
  } finally {
    if (seq === versions.seq) els.versionList.removeAttribute('aria-busy');
  }
}

function versionItem(v, index) {
  const selected = !!(versions.selected && versions.selected.id === v.id);
  const dataset = v.label ? { id: String(v.id), label: v.label } : { id: String(v.id) };
  return el('li', { class: 'version-item', dataset },
    el('button', {
      class: 'version-btn', type: 'button', 'aria-current': selected ? 'true' : null,
      onclick: () => selectVersion(v),
    },
    el('span', { class: 'version-top' },
      el('time', { class: 'version-time', datetime: v.created_at, title: fullTime(v.created_at) },
        versionTime(v.created_at)),
      index === 0 ? el('span', { class: 'version-latest' }, 'latest') : null),
    v.label ? el('span', { class: 'version-label' }, v.label) : null,
    el('span', { class: 'version-authors' }, authorsText(v))));
}

function renderVersions() {
  const rows = versions.items.map(versionItem);
  if (!rows.length) {
    rows.push(el('li', { class: 'version-empty' },
      'No versions yet: one is kept each time the note is saved.'));
  }
  els.versionList.replaceChildren(...rows);
  els.versionFooter.replaceChildren(versions.cursor
    ? el('button', {
      class: 'btn subtle', type: 'button', dataset: { testid: 'more-versions' },
      onclick: () => loadVersions({ append: true }),
    }, 'Load more')
    : '');
}

function selectVersion(v) {
  versions.selected = v;
  renderVersions();
  showPreview(v);
}

/** The preview, in the editor's place: the version's text, marked with what changed since
 * (deleted since: <del>; inserted since: <ins>), and its title when that changed. `quiet`: a
 * refresh (the current text moved), keeping what is shown until the new answer comes. */
async function showPreview(v, { quiet = false } = {}) {
  const s = versions.session;
  if (!s) return;
  const seq = ++versions.previewSeq;
  els.editorWrap.hidden = true;
  els.preview.hidden = false;
  els.preview.dataset.version = String(v.id);
  els.previewHeading.textContent = v.label ? `“${v.label}”` : `Version of ${versionWhen(v.created_at)}`;
  els.previewMeta.textContent = [
    v.label ? versionTime(v.created_at) : null,
    authorsText(v),
    Number.isInteger(v.length) ? `${v.length} character${v.length === 1 ? '' : 's'}` : null,
  ].filter(Boolean).join(' · ');
  els.previewMeta.title = fullTime(v.created_at);
  renderHistoryAccess();
  if (!quiet) {
    setPreviewError('');
    els.previewTitle.hidden = true;
    els.previewSummary.textContent = '';
    els.previewText.replaceChildren(el('span', { class: 'preview-loading' }, 'Loading…'));
    els.previewText.scrollTop = 0;
  }
  els.previewText.setAttribute('aria-busy', 'true');
  try {
    const content = versions.contents.has(v.id)
      ? Promise.resolve(versions.contents.get(v.id))
      : api(notePath(s, `/versions/${encodeURIComponent(v.id)}`), { token: s.token }).then((full) => {
        versions.contents.set(v.id, full.content);
        return full.content;
      });
    const [text, changes] = await Promise.all([
      content,
      api(notePath(s, `/versions/${encodeURIComponent(v.id)}/diff`), { token: s.token }),
    ]);
    if (seq !== versions.previewSeq || versions.session !== s) return;
    renderPreview(text, changes);
  } catch (err) {
    if (seq !== versions.previewSeq || versions.session !== s) return;
    setPreviewError(`Could not show this version: ${problemText(err)}`);
    if (!quiet) els.previewText.replaceChildren();
  } finally {
    if (seq === versions.previewSeq) els.previewText.removeAttribute('aria-busy');
  }
}

function renderPreview(text, changes) {
  let segments;
  setPreviewError('');
  try {
    segments = changeSegments(text, Array.isArray(changes.delta) ? changes.delta : []);
  } catch (err) {
    console.warn('notes: the diff does not fit the version', err);
    segments = [{ kind: 'same', text }];
    setPreviewError('The changes since this version could not be shown: this is its text as it was.');
  }
  const nodes = segments.map((seg) => {
    if (seg.kind === 'same') return document.createTextNode(seg.text);
    const blank = /^\s+$/u.test(seg.text);
    return el(seg.kind, {
      class: `diff-${seg.kind}${blank ? ' diff-blank' : ''}`,
      title: seg.kind === 'del' ? 'In this version, removed since' : 'Added since this version',
    }, seg.text);
  });
  if (!nodes.length) nodes.push(el('span', { class: 'preview-empty' }, 'This version is empty.'));
  nodes.push(document.createTextNode('\u200b')); // keeps a trailing newline's line
  els.previewText.replaceChildren(...nodes);
  const { removed, added } = changeCounts(segments);
  els.previewSummary.textContent = removed || added
    ? `${removed} removed, ${added} added (characters)`
    : 'The text is the same as now.';
  const title = changes.title || {};
  const from = title.from ?? '';
  const to = title.to ?? '';
  if (from !== to) {
    els.previewTitle.replaceChildren('Title: ',
      el('del', { class: 'diff-del' }, from || 'Untitled'), ' → ',
      el('ins', { class: 'diff-ins' }, to || 'Untitled'));
    els.previewTitle.hidden = false;
  } else {
    els.previewTitle.hidden = true;
    els.previewTitle.replaceChildren();
  }
}

function closePreview() {
  versions.previewSeq += 1;
  const was = versions.selected;
  versions.selected = null;
  els.preview.hidden = true;
  delete els.preview.dataset.version;
  els.previewText.replaceChildren();
  els.editorWrap.hidden = false;
  if (was && versions.session) renderVersions();
  scheduleOverlay();
}

/** Restoring and naming: writers only (an owner or editor, by account or link). */
function renderHistoryAccess() {
  const s = versions.session;
  const writable = !!(s && session === s && s.canWrite());
  els.restoreVersion.hidden = !writable;
  if (!writable) hideNameForm();
  els.nameVersion.hidden = !writable || !els.nameVersionForm.hidden;
}

async function restoreVersion() {
  const s = versions.session;
  const v = versions.selected;
  if (!s || !v || !s.canWrite()) return;
  els.restoreVersion.disabled = true;
  setPreviewError('');
  try {
    // what was typed reaches the server first (the restore replaces it, and the history keeps it)
    if (s.setTitle.pending) s.setTitle.flush(els.title.value);
    await s.settled(5000);
    await api(notePath(s, `/versions/${encodeURIComponent(v.id)}/restore`), { method: 'POST', token: s.token });
  } catch (err) {
    if (versions.session === s) setPreviewError(`Could not restore this version: ${problemText(err)}`);
    return;
  } finally {
    els.restoreVersion.disabled = false;
  }
  if (versions.session !== s) return;
  // the text comes back through the live socket as an edit, like anybody's
  closePreview();
  loadVersions();
  showNotice(`Restored the version of ${versionWhen(v.created_at)}. The text it replaced is kept in the history.`,
    { kind: 'info' });
}

function showNameForm() {
  els.nameVersionForm.hidden = false;
  els.nameVersion.hidden = true;
  els.versionLabel.value = '';
  els.versionLabel.focus();
}

function hideNameForm() {
  els.nameVersionForm.hidden = true;
  els.nameVersionSave.disabled = false;
  const s = versions.session;
  els.nameVersion.hidden = !(s && session === s && s.canWrite());
}

async function nameVersion(e) {
  e.preventDefault();
  const s = versions.session;
  if (!s || !s.canWrite()) return;
  const label = els.versionLabel.value.trim();
  if (!label) {
    setHistoryError('Enter a name for the version.');
    els.versionLabel.focus();
    return;
  }
  els.nameVersionSave.disabled = true;
  setHistoryError('');
  try {
    if (s.setTitle.pending) s.setTitle.flush(els.title.value);
    await s.settled(5000); // the name goes on the text as typed, not on an older one
    await api(notePath(s, '/versions'), { method: 'POST', body: { label }, token: s.token });
  } catch (err) {
    if (versions.session === s) setHistoryError(`Could not name the version: ${problemText(err)}`);
    els.nameVersionSave.disabled = false;
    return;
  }
  if (versions.session !== s) return;
  hideNameForm();
  loadVersions();
}

els.history.addEventListener('click', openHistory);
els.closeHistory.addEventListener('click', () => closeHistory({ focus: true }));
els.closePreview.addEventListener('click', () => {
  closePreview();
  els.editor.focus({ preventScroll: true });
});
els.restoreVersion.addEventListener('click', restoreVersion);
els.nameVersion.addEventListener('click', showNameForm);
els.nameVersionCancel.addEventListener('click', () => {
  hideNameForm();
  setHistoryError('');
});
els.nameVersionForm.addEventListener('submit', nameVersion);
for (const area of [els.historyPanel, els.preview]) {
  area.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || e.defaultPrevented) return;
    e.preventDefault();
    if (!els.nameVersionForm.hidden) hideNameForm();
    else if (versions.selected) closePreview();
    else closeHistory({ focus: true });
  });
}

// --- downloading the open note ---------------------------------------------------------------

/** GET /notes/{id} as Markdown (a link cannot send Accept, nor a share link's token), saved
 * under the name the server gives in Content-Disposition. */
async function downloadNote() {
  const s = session;
  if (!s) return;
  els.download.disabled = true;
  try {
    if (s.setTitle.pending) s.setTitle.flush(els.title.value);
    await s.settled(5000); // the file holds what was typed
    const path = notePath(s);
    const headers = { Accept: 'text/markdown' };
    if (s.token) headers.Authorization = `Bearer ${s.token}`;
    let res;
    try {
      res = await fetch(path, { cache: 'no-store', headers });
    } catch (err) {
      throw new ApiError('the server cannot be reached', 0, null);
    }
    if (!res.ok) throw await failure(res, path, s.token);
    const blob = await res.blob();
    const name = dispositionFilename(res.headers.get('Content-Disposition'))
      || fallbackFilename(s.client.title || els.title.value);
    saveBlob(blob, name);
  } catch (err) {
    showNotice(`Could not download the note: ${problemText(err)}`);
  } finally {
    els.download.disabled = false;
  }
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

els.download.addEventListener('click', downloadNote);

// --- the trash: my notes moved there, restored or deleted forever ------------------------------

const TRASH_PAGE_SIZE = 50;
const trash = { items: [], cursor: null, seq: 0, purging: null };

function setTrashError(text) {
  els.trashError.textContent = text;
  els.trashError.hidden = !text;
}

/** "in 29 days", "tomorrow", "today": when a trashed note is deleted for good. */
function purgeWhen(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '';
  const days = Math.ceil((t - Date.now()) / 86400000);
  if (days <= 0) return 'today';
  if (days === 1) return 'tomorrow';
  return `in ${days} days`;
}

function trashItem(note) {
  const title = note.title || 'Untitled';
  const titleId = `trash-title-${note.id}`; // the buttons say what they act on
  return el('li', { class: 'trash-item', dataset: { id: note.id } },
    el('div', { class: 'trash-what' },
      el('span', { class: 'share-name trash-title', id: titleId }, title),
      el('span', { class: 'trash-when' },
        el('time', { class: 'trash-deleted', datetime: note.deleted_at, title: fullTime(note.deleted_at) },
          `trashed ${relativeTime(note.deleted_at)}`),
        ' · ',
        el('time', { class: 'trash-purge', datetime: note.purge_at, title: fullTime(note.purge_at) },
          `deleted for good ${purgeWhen(note.purge_at)}`))),
    el('div', { class: 'trash-actions' },
      el('button', {
        class: 'btn small', type: 'button', 'aria-describedby': titleId,
        onclick: (e) => restoreFromTrash(note, e.currentTarget),
      }, 'Restore'),
      el('button', {
        class: 'btn small danger', type: 'button', 'aria-describedby': titleId,
        onclick: () => confirmPurge(note),
      }, 'Delete forever')));
}

function renderTrash() {
  const rows = trash.items.map(trashItem);
  if (!rows.length) rows.push(el('li', { class: 'trash-empty' }, 'The trash is empty.'));
  els.trashList.replaceChildren(...rows);
  els.trashFooter.replaceChildren(trash.cursor
    ? el('button', { class: 'btn subtle', type: 'button', onclick: () => loadTrash({ append: true }) }, 'Load more')
    : '');
}

async function loadTrash({ append = false } = {}) {
  const seq = ++trash.seq;
  const params = new URLSearchParams({ limit: String(TRASH_PAGE_SIZE) });
  if (append && trash.cursor) params.set('cursor', trash.cursor);
  els.trashList.setAttribute('aria-busy', 'true');
  try {
    const page = await api(`/trash?${params}`);
    if (seq !== trash.seq) return;
    const items = page.items || [];
    if (append) {
      const known = new Set(trash.items.map((n) => n.id));
      trash.items.push(...items.filter((n) => !known.has(n.id)));
    } else {
      trash.items = items;
    }
    trash.cursor = page.next_cursor || null;
    renderTrash();
  } catch (err) {
    if (seq !== trash.seq) return;
    setTrashError(`Could not load the trash: ${problemText(err)}`);
    if (!trash.items.length) els.trashList.replaceChildren();
  } finally {
    if (seq === trash.seq) els.trashList.removeAttribute('aria-busy');
  }
}

function openTrash() {
  trash.items = [];
  trash.cursor = null;
  setTrashError('');
  els.trashList.replaceChildren(el('li', { class: 'trash-empty' }, 'Loading…'));
  els.trashFooter.replaceChildren();
  els.trashDialog.showModal();
  loadTrash();
}

function dropFromTrash(id) {
  trash.items = trash.items.filter((n) => n.id !== id);
  renderTrash();
}

async function restoreFromTrash(note, button) {
  setTrashError('');
  if (button) button.disabled = true;
  try {
    await api(`/trash/${encodeURIComponent(note.id)}/restore`, { method: 'POST' });
  } catch (err) {
    setTrashError(`Could not restore “${note.title || 'Untitled'}”: ${problemText(err)}`);
    if (button) button.disabled = false;
    return;
  }
  dropFromTrash(note.id);
  loadList(); // back in the list, in its place
  showNotice(`“${note.title || 'Untitled'}” is back in your notes.`, { kind: 'info' });
}

function confirmPurge(note) {
  trash.purging = note;
  els.purgeTitle.textContent = `“${note.title || 'Untitled'}”`;
  els.purgeDialog.returnValue = '';
  els.purgeDialog.showModal();
}

async function purge(note) {
  setTrashError('');
  try {
    await api(`/trash/${encodeURIComponent(note.id)}`, { method: 'DELETE' });
  } catch (err) {
    if (err.status !== 404) { // (already gone: as good as done)
      setTrashError(`Could not delete “${note.title || 'Untitled'}”: ${problemText(err)}`);
      return;
    }
  }
  dropFromTrash(note.id);
}

els.openTrash.addEventListener('click', openTrash);
for (const button of els.trashDialog.querySelectorAll('[data-close]')) {
  button.addEventListener('click', () => els.trashDialog.close());
}
els.trashDialog.addEventListener('close', () => {
  trash.seq += 1;
  if (els.purgeDialog.open) els.purgeDialog.close();
});
els.purgeDialog.addEventListener('close', () => {
  const note = trash.purging;
  trash.purging = null;
  if (els.purgeDialog.returnValue === 'purge' && note) purge(note);
});

// --- presence: peers list and cursors over the editor ----------------------------------------

function lineCol(text, cpIndex) {
  const u = cpToUtf16(text, cpIndex);
  const before = text.slice(0, u);
  const line = before.split('\n').length;
  const col = utf16ToCp(before, before.length) - utf16ToCp(before, before.lastIndexOf('\n') + 1) + 1;
  return { line, col };
}

function renderPeers() {
  if (!session) return;
  const c = session.client;
  const peers = [...c.peers.values()];
  const chips = peers.map((p) => {
    const color = colorFor(p.client);
    const cur = c.peerCursor(p);
    let where = '';
    if (cur) {
      const { line, col } = lineCol(c.text, Math.min(cur.index, [...c.text].length));
      where = `Ln ${line}, Col ${col}${cur.length ? ` (${cur.length} selected)` : ''}`;
    }
    return el('span', {
      class: 'peer', title: where ? `${p.name}: ${where}` : p.name,
      dataset: { client: p.client, name: p.name, cursor: cur ? String(cur.index) : '' },
      style: `--peer: ${color}`,
    }, el('span', { class: 'peer-dot', 'aria-hidden': 'true', dataset: { initial: Array.from((p.name || '?').trim())[0]?.toUpperCase() || '?' } }),
    el('span', { class: 'peer-name' }, p.name || 'anonymous'),
    where ? el('span', { class: 'peer-where' }, where) : null);
  });
  if (!chips.length) chips.push(el('span', { class: 'peers-alone' }, session.connection === 'connected' ? 'Only you here' : ''));
  els.peers.replaceChildren(...chips);
}

/** The mirror div behind the textarea: same text, with the peers' selections and carets. */
function renderOverlay() {
  if (!session) return;
  const c = session.client;
  const text = els.editor.value;
  const marks = [];
  for (const p of c.peers.values()) {
    const cur = c.peerCursor(p);
    if (!cur) continue;
    const color = colorFor(p.client);
    const s = cpToUtf16(text, cur.index);
    const e = cur.length ? cpToUtf16(text, cur.index + cur.length) : s;
    marks.push({ s: Math.min(s, text.length), e: Math.min(e, text.length), color, name: p.name || 'anonymous', client: p.client });
  }
  // a caret's name shows for a few seconds after it moves, then only its flag
  const now = Date.now();
  let nextExpiry = Infinity;
  for (const m of marks) {
    const seen = session.peerSeen.get(m.client);
    if (!seen || seen.s !== m.s || seen.e !== m.e) session.peerSeen.set(m.client, { s: m.s, e: m.e, t: now });
    const age = now - session.peerSeen.get(m.client).t;
    m.fresh = age < CARET_LABEL_MS;
    if (m.fresh) nextExpiry = Math.min(nextExpiry, CARET_LABEL_MS - age);
  }
  clearTimeout(session.overlayTimer);
  if (nextExpiry < Infinity) session.overlayTimer = setTimeout(scheduleOverlay, nextExpiry + 30);
  if (!marks.length) {
    // nobody to draw: keep the (possibly long) text out of the mirror
    if (els.mirror.firstChild) els.mirror.replaceChildren();
    return;
  }
  const nodes = [];
  // cut points: every selection edge and caret
  const cuts = new Set([0, text.length]);
  for (const m of marks) {
    cuts.add(m.s);
    cuts.add(m.e);
  }
  const points = [...cuts].sort((a, b) => a - b);
  for (let i = 0; i < points.length; i++) {
    const at = points[i];
    for (const m of marks) {
      if (m.e === at) {
        nodes.push(el('span', { class: m.fresh ? 'caret fresh' : 'caret', style: `--peer: ${m.color}`, dataset: { client: m.client } },
          el('span', { class: 'caret-label' }, m.name)));
      }
    }
    const next = points[i + 1];
    if (next === undefined || next === at) continue;
    const piece = text.slice(at, next);
    const cover = marks.find((m) => m.s <= at && m.e >= next && m.e > m.s);
    nodes.push(cover ? el('span', { class: 'sel', style: `--peer: ${cover.color}` }, piece) : document.createTextNode(piece));
  }
  nodes.push(document.createTextNode('\u200b')); // keeps a trailing newline's line
  els.mirror.replaceChildren(...nodes);
  els.mirror.scrollTop = els.editor.scrollTop;
}

let overlayQueued = false;

function scheduleOverlay() {
  if (overlayQueued) return;
  overlayQueued = true;
  requestAnimationFrame(() => {
    overlayQueued = false;
    renderPeers();
    renderOverlay();
  });
}

new ResizeObserver(() => scheduleOverlay()).observe(els.editor);

window.addEventListener('beforeunload', (e) => {
  // (a revoked link's edits can never be sent: nothing to warn about)
  if (session && session.client.pending && !session.client.deleted && session.lost !== 'revoked') {
    e.preventDefault();
    e.returnValue = ''; // "changes you made may not be saved"
  }
});

// --- automation hook -------------------------------------------------------------------------

function whenIdle(timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (session && session.connection === 'connected' && !session.client.pending && !session.domPending) {
        resolve(window.notesApp.state());
      } else if (Date.now() - t0 > timeoutMs) {
        reject(new Error('notes: still not idle'));
      } else {
        setTimeout(tick, 20);
      }
    };
    tick();
  });
}

window.notesApp = {
  /** The open note's id, or null on the list. */
  get noteId() {
    return session ? session.id : null;
  },
  get name() {
    return displayName;
  },
  /** {on, signup, user}: accounts on this server and who is signed in. */
  get account() {
    return { on: account.on, signup: account.signup, user: account.user };
  },
  /** My role on the open note ('owner' with accounts off; null while not known). */
  get role() {
    return session ? session.role : null;
  },
  /** Is the open note open with a share link (its token, not my account)? */
  get viaLink() {
    return !!(session && session.token);
  },
  /** {noteId, rev, text, title, pending, connected, status, saved, peers, clientId, editorText} */
  state() {
    if (!session) return { noteId: null, rev: null, text: null, title: null, pending: false, connected: false, status: 'idle', saved: true, peers: [], clientId: null, editorText: null };
    const s = session.client.state();
    return {
      noteId: session.id,
      rev: s.rev,
      text: s.text,
      title: s.title,
      pending: s.pending,
      connected: session.connection === 'connected',
      status: session.client.deleted ? 'deleted' : session.connection,
      saved: s.saved,
      savedRev: s.savedRev,
      peers: s.peers.map((p) => ({ client: p.client, name: p.name, cursor: p.localCursor })),
      clientId: s.clientId,
      editorText: els.editor.value,
    };
  },
  /** Drop the live connection as a network failure would; it reconnects with backoff. */
  dropConnection() {
    if (session) session.live.drop();
  },
  /** Go offline until reconnect() (typing keeps working). */
  disconnect() {
    if (session) session.live.suspend();
  },
  reconnect() {
    if (session) session.live.resume();
  },
  /** Resolves with state() once connected with nothing pending. */
  whenIdle,
  open(id) {
    navigate(id);
  },
  showList() {
    navigate(null);
  },
  createNote,
  refreshList: () => loadList(),
  setName(name) {
    els.name.value = name;
    commitName();
  },
  get client() {
    return session ? session.client : null;
  },
};

// --- start -----------------------------------------------------------------------------------

/** Accounts on or off? Signed in? Then the sign-in view, or the notes as ever (or, signed out,
 * the one note a share link opens). */
async function start() {
  shareLinks.takeFromUrl();
  try {
    const status = await api('/auth/status');
    account.on = status.auth === 'on';
    account.signup = status.signup || 'open';
    account.user = status.user || null;
  } catch (err) {
    // a server without accounts (or none that answers: the list will say so)
  }
  account.ready = true;
  const id = noteIdFromUrl();
  if (account.on && !account.user && !(id && shareLinks.get(id))) showSignIn();
  else enterApp();
}

start();
window.addEventListener('focus', () => {
  if (!session && !els.search.value && !(account.on && !account.user)) loadList();
});
