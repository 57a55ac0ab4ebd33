/**
 * `pgbell/react`: `useNotifications` (hook.ts), the headless hook every component of a page shares
 * one client through, and `<NotificationBell />` (bell.tsx), a whole bell drawn on it.
 */
export { useNotifications, useWebSocket, type Alert, type ArchiveTarget, type ClientOptions, type Notifications, type State, type Status, type TypeCounts } from './hook.js';
export { NotificationBell, type BellRowActions, type NotificationBellProps } from './bell.js';
export { bellCss } from './bell-css.js';
