/**
 * The bell's stylesheet: plain CSS, themed by custom properties (set any `--pgbell-*` on the bell
 * or an ancestor), light or dark by `prefers-color-scheme`. `<NotificationBell />` renders it
 * inside itself unless `unstyled`; an app with its own stylesheet may copy it from here.
 * Colours meet WCAG AA contrast (4.5:1) for their text in both schemes.
 */
export const bellCss = `
.pgbell{--pgbell-bg:#fff;--pgbell-fg:#1f2328;--pgbell-muted:#57606a;--pgbell-border:#d0d7de;--pgbell-accent:#0969da;--pgbell-unread-bg:#ddf4ff;--pgbell-hover-bg:#f6f8fa;--pgbell-badge-bg:#cf222e;--pgbell-badge-fg:#fff;--pgbell-badge-zero-bg:#57606a;--pgbell-button-fg:inherit;--pgbell-live:#1a7f37;--pgbell-polling:#9a6700;--pgbell-connecting:#6e7781;--pgbell-offline:#cf222e;--pgbell-radius:8px;--pgbell-width:380px;--pgbell-max-height:70vh;--pgbell-shadow:0 8px 24px rgba(140,149,159,.3);position:relative;display:inline-block}
@media (prefers-color-scheme:dark){.pgbell{--pgbell-bg:#161b22;--pgbell-fg:#e6edf3;--pgbell-muted:#9198a1;--pgbell-border:#30363d;--pgbell-accent:#4493f8;--pgbell-unread-bg:#10243e;--pgbell-hover-bg:#21262d;--pgbell-badge-bg:#da3633;--pgbell-badge-zero-bg:#6e7681;--pgbell-live:#3fb950;--pgbell-polling:#d29922;--pgbell-connecting:#9198a1;--pgbell-offline:#f85149;--pgbell-shadow:0 8px 24px rgba(1,4,9,.8)}}
.pgbell *{box-sizing:border-box}
.pgbell-sr{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
.pgbell-button{position:relative;display:inline-flex;align-items:center;padding:4px 8px;border:0;border-radius:6px;background:none;color:var(--pgbell-button-fg);font:inherit;cursor:pointer}
.pgbell :focus-visible{outline:2px solid var(--pgbell-accent);outline-offset:2px}
.pgbell-badge{position:absolute;top:-4px;right:-6px;min-width:18px;padding:0 5px;border-radius:9px;background:var(--pgbell-badge-bg);color:var(--pgbell-badge-fg);font-size:11px;font-weight:700;line-height:18px;text-align:center}
.pgbell-badge[data-zero=true]{background:var(--pgbell-badge-zero-bg)}
.pgbell-dot{display:inline-block;width:9px;height:9px;border-radius:50%;background:var(--pgbell-connecting)}
.pgbell-button .pgbell-dot{position:absolute;bottom:0;left:2px;box-shadow:0 0 0 2px var(--pgbell-bg)}
.pgbell-dot[data-status=live]{background:var(--pgbell-live)}
.pgbell-dot[data-status=polling]{background:var(--pgbell-polling)}
.pgbell-dot[data-status=offline]{background:var(--pgbell-offline)}
.pgbell-popup{position:absolute;top:calc(100% + 8px);right:0;z-index:10;width:var(--pgbell-width);max-width:calc(100vw - 16px);max-height:var(--pgbell-max-height);overflow:auto;background:var(--pgbell-bg);color:var(--pgbell-fg);border:1px solid var(--pgbell-border);border-radius:var(--pgbell-radius);box-shadow:var(--pgbell-shadow);font-size:14px;line-height:1.4;text-align:left}
.pgbell-head{display:flex;align-items:center;gap:8px;padding:10px;border-bottom:1px solid var(--pgbell-border)}
.pgbell-head h2{margin:0;font-size:15px;flex:1}
.pgbell-state{display:inline-flex;align-items:center;gap:6px;font-size:12px;color:var(--pgbell-muted)}
.pgbell-tools{display:flex;justify-content:space-between;gap:8px;padding:8px 10px;border-bottom:1px solid var(--pgbell-border)}
.pgbell select,.pgbell-popup button{font:inherit;font-size:13px;color:var(--pgbell-fg);background:var(--pgbell-bg);border:1px solid var(--pgbell-border);border-radius:6px;padding:3px 8px}
.pgbell-popup button{cursor:pointer}
.pgbell-popup button:disabled{cursor:default;opacity:.6}
.pgbell-list{list-style:none;margin:0;padding:0}
.pgbell-row{padding:10px 12px;border-bottom:1px solid var(--pgbell-border);outline-offset:-2px}
.pgbell-row[data-read=false]{background:var(--pgbell-unread-bg)}
.pgbell-row:hover{background:var(--pgbell-hover-bg)}
.pgbell-title{font-weight:600}
.pgbell-title a{color:inherit}
.pgbell-kind{font-size:11px;text-transform:uppercase;color:var(--pgbell-muted);border:1px solid var(--pgbell-border);border-radius:4px;padding:0 4px;margin-right:6px;font-weight:400}
.pgbell-message{color:var(--pgbell-muted)}
.pgbell-meta{display:flex;justify-content:space-between;align-items:center;gap:8px;margin-top:4px;font-size:12px;color:var(--pgbell-muted)}
.pgbell-actions{display:inline-flex;gap:6px}
.pgbell-popup:focus{outline:none}
.pgbell-empty{margin:0;padding:16px 12px;color:var(--pgbell-muted)}
.pgbell-more{display:block;width:calc(100% - 20px);margin:10px}
`;
