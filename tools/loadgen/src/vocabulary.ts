/**
 * Words of the synthetic pages: each occurs in the reference pages and is one whole BERT token, so it has a vector of its own in both models;
 * no word belongs to two topics, so the topics are apart by construction.
 */
export interface Topic {
  name: string;
  words: readonly string[];
}

// biome-ignore format: word lists read best a line each
export const TOPICS: readonly Topic[] = [
  { name: "music", words: ["music", "song", "album", "band", "guitar", "piano", "concert", "singer", "melody", "rhythm", "orchestra", "recording", "drums", "jazz", "rock", "audio", "musician", "vocal", "composer", "lyrics", "tour", "opera", "bass", "songs", "musical", "instrument", "instruments", "synthesizer", "sound"] },
  { name: "sports", words: ["football", "soccer", "team", "league", "season", "coach", "goal", "ball", "tournament", "championship", "stadium", "basketball", "baseball", "tennis", "golf", "athlete", "club", "fans", "victory", "cricket", "hockey", "sprint", "medal", "squad", "sport", "sports", "athletes", "racing"] },
  { name: "finance", words: ["market", "stock", "trading", "price", "bank", "investor", "fund", "currency", "money", "financial", "payment", "credit", "profit", "revenue", "asset", "bond", "capital", "economy", "inflation", "tax", "budget", "insurance", "portfolio", "broker", "shares", "debt", "banking", "investment"] },
  { name: "weather", words: ["weather", "rain", "storm", "wind", "temperature", "forecast", "climate", "snow", "cloud", "hurricane", "tornado", "flood", "drought", "humidity", "atmosphere", "ocean", "thunder", "ice", "heat", "rainfall", "cyclone", "meteorological", "tropical", "storms", "atmospheric"] },
  { name: "medicine", words: ["patient", "hospital", "doctor", "disease", "treatment", "medical", "clinical", "surgery", "drug", "therapy", "nurse", "health", "heart", "blood", "cancer", "diagnosis", "infection", "brain", "pain", "symptoms", "medicine", "virus", "surgeon", "dose", "patients", "diseases", "physicians"] },
  { name: "transport", words: ["train", "railway", "station", "airport", "flight", "pilot", "passenger", "bus", "vehicle", "traffic", "road", "car", "highway", "route", "ship", "cargo", "fuel", "driver", "metro", "tram", "transit", "ticket", "airline", "freight", "trains", "passengers"] },
  { name: "games", words: ["game", "console", "arcade", "puzzle", "gameplay", "multiplayer", "shooter", "adventure", "quest", "sequel", "nintendo", "sega", "playstation", "xbox", "controller", "dungeon", "warrior", "sword", "levels", "enemies", "boss", "games", "player", "players"] },
  { name: "military", words: ["army", "navy", "missile", "soldier", "war", "defense", "combat", "weapon", "tank", "troops", "fleet", "submarine", "artillery", "infantry", "squadron", "soldiers", "warfare", "battlefield", "enemy", "commander", "aircraft", "carrier", "military", "weapons"] },
  { name: "computing", words: ["software", "database", "server", "kernel", "memory", "processor", "compiler", "programming", "code", "query", "cluster", "storage", "cache", "thread", "protocol", "linux", "unix", "java", "python", "algorithm", "file", "api", "cpu"] },
  { name: "space", words: ["space", "orbit", "rocket", "launch", "planet", "star", "telescope", "galaxy", "moon", "mars", "solar", "spacecraft", "nasa", "earth", "comet", "asteroid", "orbital", "cosmic", "satellites", "astronomy", "astronomical"] },
  { name: "film", words: ["film", "movie", "television", "actor", "actress", "director", "episode", "camera", "scene", "cinema", "drama", "comedy", "animation", "broadcast", "channel", "producer", "screen", "story", "cast", "premiere", "films"] },
  { name: "energy", words: ["energy", "electricity", "grid", "nuclear", "reactor", "battery", "voltage", "turbine", "generator", "oil", "gas", "plant", "renewable", "emissions", "pipeline", "utility", "power", "electrical"] },
  { name: "education", words: ["school", "student", "teacher", "university", "college", "class", "course", "learning", "campus", "degree", "library", "professor", "curriculum", "students", "teaching"] },
  { name: "biology", words: ["species", "animal", "animals", "plants", "gene", "genes", "cells", "cell", "evolution", "dna", "organism", "fish", "bird", "birds"] },
];

/** Words any page may use: mostly function words, which both models weigh little, and a few generic nouns shared across topics. */
// biome-ignore format: word lists read best a line each
export const COMMON_WORDS: readonly string[] = [
  "the", "of", "and", "in", "a", "with", "for", "on", "by", "from", "to", "is", "are", "was", "its", "their",
  "new", "early", "modern", "major", "local", "national", "public", "history", "system", "year", "world", "first", "large", "time", "many", "several",
];
