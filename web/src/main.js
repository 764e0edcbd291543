// The web client's entry point: styles, the built-in panels, the app.

import './style.css';
import { registerPanel } from './panels.js';
import { chatPanel } from './views/chat.js';
import { App } from './app.js';
import { graphPanel } from './graph/panel.js';
import { groupCallPanel } from './views/groupcall.js';
import { scenePanel } from './scene/panel.js';

registerPanel({ id: 'chat', label: 'Chat', mount: chatPanel });
registerPanel({ id: 'graph', label: 'History', mount: graphPanel });
registerPanel({ id: 'call', label: 'Group call', mount: groupCallPanel });
registerPanel({ id: 'scene', label: '3D scene', mount: scenePanel });

new App(document.getElementById('app')).start();
