'use client';
/**
 * `<NotificationBell />`: a drop-in bell on `useNotifications`. A button with the unseen (or
 * unread) badge and the connection's status dot opens a popup (a non-modal dialog) with a
 * category filter (with counts), mark all read, the alerts (relative times, mark read, archive)
 * and load more. Opening it marks what it shows seen.
 *
 * Accessibility (WAI-ARIA disclosure of a dialog): the button says its state (`aria-expanded`)
 * and, in its name, the counts and the connection's status; a polite live region announces
 * a new count. Enter or Space (or ArrowDown) on the button opens it and moves focus to the first
 * alert; ArrowUp/ArrowDown/Home/End move between alerts (one tab stop, the rest tabindex -1);
 * Enter on an alert marks it read (or calls `onSelect`), Delete archives it; Tab reaches a row's
 * own buttons; Escape closes it and gives focus back to the button, as does a click outside.
 * An archived row's focus goes to the next row. The `data-testid` attributes are stable hooks
 * for an app's own tests.
 */
import { useCallback, useEffect, useId, useRef, useState, type KeyboardEvent, type ReactNode } from 'react';
import type { Alert, ClientOptions, Status } from '../client/index.js';
import { bellCss } from './bell-css.js';
import { useNotifications } from './hook.js';
import { relativeTime } from './time.js';

export interface BellRowActions {
  markRead(): void;
  /** Archives the alert: it leaves the list (in every tab). */
  archive(): void;
}

export interface NotificationBellProps extends ClientOptions {
  /** The filter's choices (alert types). Default: the types of the alerts held. Empty: no filter. */
  categories?: readonly string[];
  /** The button's and the popup's name (default "Notifications"). */
  label?: string;
  /**
   * What the badge counts: `unseen` (default: alerts not seen yet, "new since the bell was last
   * opened") or `unread`. The filter's counts follow it.
   */
  badge?: 'unseen' | 'unread';
  /**
   * Opening the bell marks what it shows seen (default true): every alert (POST /alerts/seen
   * {all: true}) when no filter is chosen, otherwise the alerts shown. What arrives while it is
   * open is new until it is opened again.
   */
  markSeenOnOpen?: boolean;
  /** Draws an alert's row content instead of the default (type, title, message, time, Mark read). */
  renderAlert?: (alert: Alert, actions: BellRowActions) => ReactNode;
  /** An alert activated (Enter on its row, or a click on its title): default, mark it read. */
  onSelect?: (alert: Alert, actions: BellRowActions) => void;
  /** Leave out the built-in stylesheet (bring your own, e.g. a copy of `bellCss`). */
  unstyled?: boolean;
  className?: string;
}

const STATUS_TEXT: Record<Status, string> = { live: 'Live', polling: 'Polling (connection down)', connecting: 'Connecting', offline: 'Offline' };

/** The props that are the bell's own; the rest are the client's options. */
function split(props: NotificationBellProps) {
  const { categories, label, badge, markSeenOnOpen, renderAlert, onSelect, unstyled, className, ...options } = props;
  return { own: { categories, label: label ?? 'Notifications', badge: badge ?? 'unseen', markSeenOnOpen: markSeenOnOpen !== false, renderAlert, onSelect, unstyled, className }, options: options as ClientOptions };
}

/**
 * What the bell uses of a DOM element. src/ compiles without the DOM's types (React declares its
 * element types empty there), so the few members used are named here.
 */
interface El {
  focus(): void;
  contains(node: unknown): boolean;
  tagName: string;
  value: string;
  ownerDocument: { addEventListener(type: 'mousedown', fn: (e: { target: unknown }) => void): void; removeEventListener(type: 'mousedown', fn: (e: { target: unknown }) => void): void };
}
const el = (x: unknown) => x as El | null;

export function NotificationBell(props: NotificationBellProps) {
  const { own, options } = split(props);
  const n = useNotifications(options);
  const { alerts, unread, unseen, byType, status, hasMore } = n;
  const [open, setOpen] = useState(false);
  const [filter, setFilter] = useState(options.types?.[0] ?? '');
  const [active, setActive] = useState(0);
  const [now, setNow] = useState(() => Date.now());
  const id = useId();
  const button = useRef<HTMLButtonElement | null>(null);
  const root = useRef<HTMLDivElement | null>(null);
  const popup = useRef<HTMLDivElement | null>(null);
  const rows = useRef<(HTMLLIElement | null)[]>([]);
  /** Focus goes to the first alert once the popup is drawn (set by the key or click that opened it). */
  const focusOnOpen = useRef(false);
  /** The row to focus once an archived one has left the list (its index: the next alert's now). */
  const refocus = useRef<number | null>(null);

  const close = useCallback((refocus: boolean) => {
    setOpen(false);
    if (refocus) el(button.current)?.focus();
  }, []);

  // Relative times stay true while the popup is open.
  useEffect(() => {
    if (!open) return;
    setNow(Date.now());
    const t = setInterval(() => setNow(Date.now()), 30_000);
    return () => clearInterval(t);
  }, [open]);

  useEffect(() => {
    if (!open || !focusOnOpen.current) return;
    focusOnOpen.current = false;
    setActive(0);
    el(rows.current[0])?.focus();
  }, [open]);

  // Opening it marks what it shows seen: with no filter chosen, everything (the badge is "new
  // since the bell was last opened"), otherwise the alerts shown. What arrives while it is open
  // counts as new until the next opening. A refusal is not retried until then.
  useEffect(() => {
    if (!open || !own.markSeenOnOpen) return;
    if (!filter && unseen > 0) void n.markSeen('all').catch(() => {});
    else {
      const ids = alerts.filter((a) => !a.seen && !a.read).map((a) => a.id);
      if (ids.length > 0) void n.markSeen(ids).catch(() => {});
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [open]);

  // An archived row left the list: focus the alert now in its place (or the popup, if none).
  useEffect(() => {
    const at = refocus.current;
    if (at === null) return;
    refocus.current = null;
    if (alerts.length === 0) return el(popup.current)?.focus();
    move(at);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [alerts]);

  // A click outside closes it (focus stays where the click put it).
  useEffect(() => {
    if (!open) return;
    const doc = el(root.current)?.ownerDocument;
    const onDown = (e: { target: unknown }) => {
      if (!el(root.current)?.contains(e.target)) close(false);
    };
    doc?.addEventListener('mousedown', onDown);
    return () => doc?.removeEventListener('mousedown', onDown);
  }, [open, close]);

  const toggle = (viaKeyboard: boolean) => {
    focusOnOpen.current = !open && viaKeyboard;
    setOpen(!open);
  };

  const move = (to: number) => {
    if (alerts.length === 0) return;
    const i = Math.max(0, Math.min(alerts.length - 1, to));
    setActive(i);
    el(rows.current[i])?.focus();
  };

  const onPopupKey = (e: KeyboardEvent) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      return close(true);
    }
    // The select's own arrows are its own.
    if (el(e.target)?.tagName === 'SELECT') return;
    const at = rows.current.findIndex((r) => r === e.target);
    const from = at >= 0 ? at : active;
    const to = e.key === 'ArrowDown' ? from + 1 : e.key === 'ArrowUp' ? from - 1 : e.key === 'Home' ? 0 : e.key === 'End' ? alerts.length - 1 : null;
    if (to === null) return;
    e.preventDefault();
    move(to);
  };

  const actionsFor = (a: Alert, i: number): BellRowActions => ({
    markRead: () => void n.markRead([a.id]).catch(() => {}),
    archive: () => {
      refocus.current = i;
      void n.archive([a.id]).catch(() => {});
    },
  });
  const select = (a: Alert, i: number) => (own.onSelect ? own.onSelect(a, actionsFor(a, i)) : actionsFor(a, i).markRead());
  const categories = own.categories ?? [...new Set([...alerts.map((a) => a.type), ...Object.keys(byType), ...(filter ? [filter] : [])])].sort();
  const popupId = `${id}-popup`;
  const count = own.badge === 'unseen' ? unseen : unread;
  const counted = own.badge === 'unseen' ? `${unseen} new, ${unread} unread` : `${unread} unread`;
  const name = `${own.label}: ${counted}, ${STATUS_TEXT[status].toLowerCase()}`;
  // The counts are the subscription's: with a category chosen, only that one's are known.
  const countOf = (type: string) => byType[type]?.[own.badge] ?? 0;
  if (active >= alerts.length && active > 0) setActive(Math.max(0, alerts.length - 1));

  return (
    <div ref={root} className={`pgbell${own.className ? ` ${own.className}` : ''}`}>
      {own.unstyled ? null : <style>{bellCss}</style>}
      <button
        ref={button}
        type="button"
        className="pgbell-button"
        aria-haspopup="dialog"
        aria-expanded={open}
        aria-controls={open ? popupId : undefined}
        aria-label={name}
        data-testid="bell"
        onClick={(e) => toggle(e.detail === 0)}
        onKeyDown={(e) => {
          if (e.key === 'ArrowDown' && !open) {
            e.preventDefault();
            toggle(true);
          }
        }}
      >
        <BellIcon />
        <span className="pgbell-badge" data-zero={count === 0} data-testid="bell-count" aria-hidden="true">
          {count}
        </span>
        <span className="pgbell-dot" data-status={status} data-testid="status" aria-hidden="true" />
      </button>
      <span className="pgbell-sr" role="status">
        {count} {own.badge === 'unseen' ? 'new' : 'unread'} {count === 1 ? 'notification' : 'notifications'}
      </span>
      {open ? (
        <div ref={popup} id={popupId} role="dialog" aria-label={own.label} tabIndex={-1} className="pgbell-popup" data-testid="dropdown" onKeyDown={onPopupKey}>
          <div className="pgbell-head">
            <h2>{own.label}</h2>
            <span className="pgbell-state">
              <span className="pgbell-dot" data-status={status} aria-hidden="true" />
              {STATUS_TEXT[status]}
            </span>
          </div>
          <div className="pgbell-tools">
            {categories.length > 0 ? (
              <select
                aria-label="Category"
                data-testid="filter"
                value={filter}
                onChange={(e) => {
                  const value = el(e.target)!.value;
                  setFilter(value);
                  void n.subscribe(value ? [value] : []);
                }}
              >
                <option value="">{filter ? 'All categories' : `All categories (${count})`}</option>
                {categories.map((c) => (
                  <option key={c} value={c}>
                    {!filter || c === filter ? `${c} (${countOf(c)})` : c}
                  </option>
                ))}
              </select>
            ) : (
              <span />
            )}
            <button type="button" data-testid="mark-all-read" disabled={unread === 0} onClick={() => void n.markAllRead()}>
              Mark all read
            </button>
          </div>
          {alerts.length === 0 ? (
            <p className="pgbell-empty">No notifications</p>
          ) : (
            <ul className="pgbell-list" aria-label={`${own.label}, newest first`}>
              {alerts.map((a, i) => (
                <li
                  key={a.id}
                  ref={(el) => {
                    rows.current[i] = el;
                  }}
                  className="pgbell-row"
                  tabIndex={i === active ? 0 : -1}
                  data-testid="alert-item"
                  data-id={a.id}
                  data-read={String(a.read)}
                  data-seen={String(a.seen || a.read)}
                  onFocus={() => setActive(i)}
                  onKeyDown={(e) => {
                    if (e.target !== e.currentTarget) return;
                    if (e.key === 'Enter') {
                      e.preventDefault();
                      select(a, i);
                    } else if (e.key === 'Delete') {
                      e.preventDefault();
                      actionsFor(a, i).archive();
                    }
                  }}
                >
                  {own.renderAlert ? own.renderAlert(a, actionsFor(a, i)) : <Row alert={a} now={now} actions={actionsFor(a, i)} />}
                </li>
              ))}
            </ul>
          )}
          {hasMore ? (
            <button type="button" className="pgbell-more" data-testid="load-more" onClick={() => void n.loadMore()}>
              Load more
            </button>
          ) : null}
        </div>
      ) : null}
    </div>
  );
}

function Row({ alert, now, actions }: { alert: Alert; now: number; actions: BellRowActions }) {
  return (
    <>
      <div className="pgbell-title">
        <span className="pgbell-kind">{alert.type}</span>
        {alert.link ? <a href={alert.link}>{alert.title}</a> : alert.title}
        {alert.read ? null : <span className="pgbell-sr"> (unread)</span>}
      </div>
      {alert.message ? <div className="pgbell-message">{alert.message}</div> : null}
      <div className="pgbell-meta">
        <time dateTime={alert.createdAt} title={new Date(alert.createdAt).toLocaleString()}>
          {relativeTime(alert.createdAt, now)}
        </time>
        <span className="pgbell-actions">
          {alert.read ? null : (
            <button type="button" data-testid="mark-read" onClick={actions.markRead} aria-label={`Mark read: ${alert.title}`}>
              Mark read
            </button>
          )}
          <button type="button" data-testid="archive" onClick={actions.archive} aria-label={`Archive: ${alert.title}`}>
            Archive
          </button>
        </span>
      </div>
    </>
  );
}

/** Drawn, not an emoji: it must look right without an emoji font. */
function BellIcon() {
  return (
    <svg width="22" height="22" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" focusable="false">
      <path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9" />
      <path d="M13.73 21a2 2 0 0 1-3.46 0" />
    </svg>
  );
}
