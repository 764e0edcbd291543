// The scene's picture, drawn with three.js: a floor, the movable objects
// and one avatar per participant. It knows nothing of the call or of the
// world's wire format: the panel hands it positions in metres.
//
// It draws on demand (after a change, or while something moves), not in
// a free-running loop: several tabs on one small machine share the CPU,
// and a still scene costs nothing.

import {
  WebGLRenderer, Scene, PerspectiveCamera, HemisphereLight, DirectionalLight, Color, Mesh, Group,
  PlaneGeometry, BoxGeometry, SphereGeometry, ConeGeometry, TorusGeometry, CapsuleGeometry,
  MeshStandardMaterial, GridHelper, Raycaster, Vector2, Vector3, Plane, Sprite, SpriteMaterial,
  CanvasTexture, SRGBColorSpace,
} from 'three';

/** FLOOR_HALF is half the floor's side, in metres: positions are clamped inside it. */
export const FLOOR_HALF = 4;

// The objects anyone may pick up, by their stable world keys; where
// they stand until someone moves them (metres), and how they look.
export const OBJECTS = [
  { key: 'obj/1', name: 'red cube', color: 0xd9534f, shape: 'box', home: [-1.2, 0.3, -1.2] },
  { key: 'obj/2', name: 'blue ball', color: 0x3a7bd5, shape: 'sphere', home: [1.2, 0.3, -1.2] },
  { key: 'obj/3', name: 'yellow cone', color: 0xf0ad4e, shape: 'cone', home: [-1.2, 0.3, 1.2] },
  { key: 'obj/4', name: 'green ring', color: 0x5cb85c, shape: 'torus', home: [1.2, 0.3, 1.2] },
];

function geometry(shape) {
  switch (shape) {
    case 'sphere': return new SphereGeometry(0.3, 24, 16);
    case 'cone': return new ConeGeometry(0.3, 0.6, 24);
    case 'torus': return new TorusGeometry(0.22, 0.09, 12, 32);
    default: return new BoxGeometry(0.55, 0.55, 0.55);
  }
}

/** avatarColor is a stable hue per identity, so each person keeps their colour. */
export function avatarColor(identity) {
  // FNV-1a, then the golden ratio spreads neighbouring hashes round the wheel.
  let h = 0x811c9dc5;
  for (const c of identity) h = Math.imul(h ^ c.codePointAt(0), 0x01000193) >>> 0;
  return new Color().setHSL((h * 0.618033988749895) % 1, 0.6, 0.55);
}

function nameSprite(text) {
  const canvas = document.createElement('canvas');
  canvas.width = 256;
  canvas.height = 64;
  const g = canvas.getContext('2d');
  g.fillStyle = 'rgba(20, 24, 32, 0.75)';
  g.beginPath();
  g.roundRect(0, 8, 256, 48, 24);
  g.fill();
  g.fillStyle = '#fff';
  g.font = '28px system-ui, sans-serif';
  g.textAlign = 'center';
  g.textBaseline = 'middle';
  g.fillText(text.length > 16 ? `${text.slice(0, 15)}…` : text, 128, 33);
  const tex = new CanvasTexture(canvas);
  tex.colorSpace = SRGBColorSpace;
  const sprite = new Sprite(new SpriteMaterial({ map: tex, depthTest: false }));
  sprite.scale.set(1.6, 0.4, 1);
  sprite.position.y = 2.1;
  sprite.renderOrder = 1;
  return sprite;
}

export class SceneView {
  /** @param {HTMLElement} host the element the canvas fills */
  constructor(host) {
    this.host = host;
    // Throws without WebGL; the panel shows that and keeps syncing.
    this.renderer = new WebGLRenderer({ antialias: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.canvas = this.renderer.domElement;
    this.canvas.className = 'scene-canvas';
    host.append(this.canvas);

    this.scene = new Scene();
    this.scene.background = new Color(0x1d2330);
    this.camera = new PerspectiveCamera(50, 1, 0.1, 100);
    this.scene.add(new HemisphereLight(0xffffff, 0x444455, 1.6));
    const sun = new DirectionalLight(0xffffff, 1.8);
    sun.position.set(4, 10, 6);
    this.scene.add(sun);

    this.floor = new Mesh(new PlaneGeometry(FLOOR_HALF * 2, FLOOR_HALF * 2),
      new MeshStandardMaterial({ color: 0x39424f, roughness: 0.95 }));
    this.floor.rotation.x = -Math.PI / 2;
    this.scene.add(this.floor);
    this.grid = new GridHelper(FLOOR_HALF * 2, FLOOR_HALF * 2, 0x6b7788, 0x4a5462);
    this.grid.position.y = 0.002;
    this.scene.add(this.grid);

    this.objects = new Map(); // key -> Mesh
    for (const o of OBJECTS) {
      const mesh = new Mesh(geometry(o.shape), new MeshStandardMaterial({ color: o.color, roughness: 0.5 }));
      mesh.userData.key = o.key;
      mesh.position.set(...o.home);
      this.objects.set(o.key, mesh);
      this.scene.add(mesh);
    }
    this.avatars = new Map(); // identity -> Group

    this.raycaster = new Raycaster();
    this.groundPlane = new Plane(new Vector3(0, 1, 0), 0);
    this.dirty = true;
    this.frame = 0;
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(host);
    this.fit();
  }

  fit() {
    const w = Math.max(1, this.host.clientWidth);
    const h = Math.max(1, this.host.clientHeight);
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    // Narrow (a phone held upright): look down more steeply from
    // further away, so that the floor's whole width fits.
    if (w < h) this.camera.position.set(0, 11.5, 6);
    else this.camera.position.set(0, 6, 6.8);
    this.camera.lookAt(0, 0, 0.3);
    this.camera.updateProjectionMatrix();
    this.invalidate();
  }

  /** invalidate asks for one redraw on the next animation frame. */
  invalidate() {
    this.dirty = true;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  draw() {
    this.frame = 0;
    if (!this.dirty) return;
    this.dirty = false;
    this.renderer.render(this.scene, this.camera);
  }

  /** setObject places an object ([x, y, z] metres); held lifts and outlines it. */
  setObject(key, pos, held) {
    const mesh = this.objects.get(key);
    if (!mesh) return;
    mesh.position.set(pos[0], pos[1] + (held ? 0.25 : 0), pos[2]);
    mesh.material.emissive.setHex(held ? 0x333333 : 0x000000);
    this.invalidate();
  }

  /** setAvatar places (making it on first use) identity's avatar at [x, y, z] metres, facing yaw radians. */
  setAvatar(identity, name, pos, yaw, self) {
    let g = this.avatars.get(identity);
    if (!g) {
      g = new Group();
      const color = avatarColor(identity);
      const body = new Mesh(new CapsuleGeometry(0.3, 0.8, 6, 16), new MeshStandardMaterial({ color, roughness: 0.6 }));
      body.position.y = 0.7;
      const nose = new Mesh(new ConeGeometry(0.12, 0.3, 12), new MeshStandardMaterial({ color: 0xffffff }));
      nose.rotation.x = -Math.PI / 2; // points along -z, "forward" at yaw 0
      nose.position.set(0, 1.05, -0.35);
      g.add(body, nose, nameSprite(self ? `${name} (you)` : name));
      g.userData.identity = identity;
      this.avatars.set(identity, g);
      this.scene.add(g);
    }
    g.position.set(pos[0], pos[1], pos[2]);
    g.rotation.y = yaw;
    this.invalidate();
  }

  /** removeAvatar drops identity's avatar (they left the call). */
  removeAvatar(identity) {
    const g = this.avatars.get(identity);
    if (!g) return;
    this.scene.remove(g);
    g.traverse((o) => {
      o.geometry?.dispose();
      o.material?.map?.dispose();
      o.material?.dispose();
    });
    this.avatars.delete(identity);
    this.invalidate();
  }

  ray(clientX, clientY) {
    const r = this.canvas.getBoundingClientRect();
    const ndc = new Vector2(((clientX - r.left) / r.width) * 2 - 1, -((clientY - r.top) / r.height) * 2 + 1);
    this.raycaster.setFromCamera(ndc, this.camera);
    return this.raycaster;
  }

  /** pickObject is the key of the object under the pointer, or null. */
  pickObject(clientX, clientY) {
    const hit = this.ray(clientX, clientY).intersectObjects([...this.objects.values()], false)[0];
    return hit ? hit.object.userData.key : null;
  }

  /** floorPoint is where the pointer meets the floor, [x, z] metres (clamped to it), or null. */
  floorPoint(clientX, clientY) {
    const p = this.ray(clientX, clientY).ray.intersectPlane(this.groundPlane, new Vector3());
    if (!p) return null;
    return [clamp(p.x), clamp(p.z)];
  }

  /** screenPoint is where world point [x, y, z] metres shows, in client coordinates. */
  screenPoint(pos) {
    const v = new Vector3(...pos).project(this.camera);
    const r = this.canvas.getBoundingClientRect();
    return [r.left + ((v.x + 1) / 2) * r.width, r.top + ((1 - v.y) / 2) * r.height];
  }

  dispose() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.resize.disconnect();
    for (const id of [...this.avatars.keys()]) this.removeAvatar(id);
    for (const mesh of this.objects.values()) {
      mesh.geometry.dispose();
      mesh.material.dispose();
    }
    this.floor.geometry.dispose();
    this.floor.material.dispose();
    this.grid.dispose();
    this.renderer.dispose();
    this.canvas.remove();
  }
}

/** clamp keeps a coordinate (metres) on the floor. */
export function clamp(v) {
  return Math.max(-FLOOR_HALF + 0.3, Math.min(FLOOR_HALF - 0.3, v));
}
